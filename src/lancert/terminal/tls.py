"""The terminal port's TLS: the server context, refusals a POS can read, and the client certificate
handed to the ASGI app.

uvicorn terminates TLS but does not tell the app which certificate the peer presented, and the paired
API is keyed by it. These protocol classes add ``scope["extensions"]["tls"]["client_cert_chain"]`` (the
ASGI TLS extension's field; Python's ssl exposes only the leaf, so it holds one PEM string) to every
HTTP request and WebSocket of the connection. asyncio calls ``connection_made`` after the TLS handshake,
so the peer certificate is known, and already verified against the terminal root, at that point.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from lancert.pki import pem
from lancert.serving.connections import GuardedHttpProtocol

log = logging.getLogger("lancert.terminal")

ASGIApp = Any


def _with_tls_extension(app: ASGIApp, transport: asyncio.BaseTransport) -> ASGIApp:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    tls = {
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "tls_version": None,
        "cipher_suite": None,
    }

    async def app_with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})
        scope["extensions"] = {**(scope["extensions"] or {}), "tls": tls}
        await app(scope, receive, send)

    return app_with_tls


class ClientCertHttpProtocol(GuardedHttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _with_tls_extension(self.config.loaded_app, transport)


class ClientCertWebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.app = _with_tls_extension(self.config.loaded_app, transport)


def client_certificate(scope: dict[str, Any]) -> x509.Certificate | None:
    """The verified leaf the client presented on this connection, or None when it sent none."""
    chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode())


def server_ssl_context(
    cert_file: str, key_file: str, client_issuers: Sequence[x509.Certificate]
) -> ssl.SSLContext:
    """TLS 1.2+ server context that asks for, but does not require, a client certificate.

    Pairing happens before the POS has a certificate, on the same port as the API, so the handshake
    accepts a connection without one (CERT_OPTIONAL) and the API refuses it in the app. A certificate
    that is presented must chain to the terminal root, or the handshake fails.

    ``client_issuers`` is the terminal's root *and its intermediate*, so a POS may present its leaf
    alone: many POS stacks do (a Java KeyStore entry, .NET's ``X509Certificate2``, curl ``--cert
    pos.crt``), and without the intermediate OpenSSL could not link that leaf to the root ("Empty reply
    from server"). Why this is safe: the terminal made that intermediate itself and it is the only
    issuer of POS certificates; it is in the store only to complete the chain, not as a trust anchor of
    its own (no ``VERIFY_X509_PARTIAL_CHAIN``), so OpenSSL still checks the intermediate against the root
    and the leaf against the intermediate, exactly as when the POS sends the chain. The set of accepted
    certificates is unchanged; only what the POS must send is smaller. A leaf from another CA, even one
    whose intermediate carries the same name, fails the signature check as before.

    What it means for unpair and revocation: nothing changes, and nothing here knows about them. TLS
    accepts every unexpired certificate the intermediate issued, including one unpaired or replaced by a
    re-pairing; :func:`lancert.terminal.app.create_app` refuses those (403) on every request and every
    WebSocket message by comparing the certificate with ``pos.json``. That check, not the trust store,
    is the revocation, so it must never be dropped for a "TLS already verified it" shortcut.

    No TLS 1.3 session tickets: every connection shows and has verified its own client certificate
    (nothing resumes a session opened before an unpair), and no ticket arrives while a threaded client
    writes its first request. Python < 3.13 drives one SSL object from websockets' reader thread and the
    writing thread at once; a ticket processed during the write lost the WebSocket upgrade request in
    about one in 1,000 to 2,500 connections here under load (the client then hangs for good), and never
    in 6,000 with tickets off.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.num_tickets = 0
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cadata=pem(list(client_issuers)).decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


# OpenSSL's verify results (x509_vfy.h) as a POS owner would say them; the rest keep OpenSSL's words.
_NOT_OURS = "not issued by this terminal (pair again, or present the certificate the terminal issued)"
_VERIFY_REASONS = {
    2: _NOT_OURS,  # unable to get issuer certificate
    7: _NOT_OURS,  # certificate signature failure
    18: _NOT_OURS,  # self-signed certificate
    19: _NOT_OURS,  # self-signed certificate in chain
    20: _NOT_OURS,  # unable to get local issuer certificate
    9: "not yet valid (check the POS clock)",
    10: "expired (pair again)",
    26: "not a TLS client certificate",  # invalid purpose
}


def refusal_reason(exc: ssl.SSLCertVerificationError) -> str:
    """Why a client certificate failed verification, in words a POS owner can act on."""
    said = _VERIFY_REASONS.get(exc.verify_code)
    return f"{said} [{exc.verify_message}]" if said else str(exc.verify_message or exc.reason or exc)


class TerminalEventLoop(asyncio.SelectorEventLoop):
    """The event loop of ``terminal run``: a refused client certificate is told to the POS and logged.

    When OpenSSL refuses a client certificate it writes a TLS alert (``unknown_ca``,
    ``certificate_expired``...) into the connection's outgoing buffer, but asyncio's TLS layer closes the
    socket without sending that buffer (Python 3.11-3.13 ``sslproto``: ``_on_handshake_complete`` goes
    straight to ``_force_close``), and logs nothing. With TLS 1.3 the POS has already finished its side
    of the handshake, so all it saw was the connection closing: curl's "Empty reply from server",
    Python's "Remote end closed connection without response". This loop wraps each server-side TLS
    protocol's handshake completion: on a certificate refusal it logs the peer and the reason, then
    sends what OpenSSL wrote (the alert) before asyncio closes the socket, so the POS reads e.g.
    ``tlsv1 alert unknown ca``. It relies on two private names of asyncio's ``SSLProtocol``; where they
    are missing the loop behaves like the stock one (tests/terminal check the alert).
    """

    def _make_ssl_transport(  # type: ignore[override]
        self, rawsock: Any, protocol: Any, sslcontext: Any, *args: Any, **kwargs: Any
    ) -> Any:
        transport = super()._make_ssl_transport(rawsock, protocol, sslcontext, *args, **kwargs)
        ssl_protocol = getattr(transport, "_ssl_protocol", None)
        complete = getattr(type(ssl_protocol), "_on_handshake_complete", None)
        if kwargs.get("server_side") and complete is not None and hasattr(ssl_protocol, "_process_outgoing"):
            peer = _peer(rawsock)
            # Only a weak reference from the wrapper stored on the protocol: a strong one (the protocol
            # itself, or its bound method) makes a reference cycle, and every closed connection's TLS
            # state (about 200 KB) then waited for the cycle collector: 600 silent connections grew the
            # terminal by 126 MiB instead of under 64.
            protocol_ref = weakref.ref(ssl_protocol)

            def on_handshake_complete(handshake_exc: BaseException | None) -> None:
                tls = protocol_ref()
                if tls is None:
                    return
                if isinstance(handshake_exc, ssl.SSLCertVerificationError):
                    reason = refusal_reason(handshake_exc)
                    log.warning("refused a client certificate from %s: %s", peer, reason)
                    try:
                        tls._process_outgoing()  # the alert; the socket closes right after
                    except (OSError, RuntimeError):
                        pass
                complete(tls, handshake_exc)

            ssl_protocol._on_handshake_complete = on_handshake_complete
        return transport


def _peer(sock: Any) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):
        return "an unknown address"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
