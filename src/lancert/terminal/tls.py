"""The client certificate of a TLS connection, handed to the ASGI app as the ASGI TLS extension.

uvicorn terminates TLS but does not tell the app which certificate the peer presented, and the paired
API is keyed by it. These protocol classes add ``scope["extensions"]["tls"]["client_cert_chain"]`` (the
ASGI TLS extension's field; Python's ssl exposes only the leaf, so it holds one PEM string) to every
HTTP request and WebSocket of the connection. asyncio calls ``connection_made`` after the TLS handshake,
so the peer certificate is known, and already verified against the terminal root, at that point.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from lancert.connections import GuardedH11Protocol

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


class ClientCertH11Protocol(GuardedH11Protocol):
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


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context that asks for, but does not require, a client certificate.

    Pairing happens before the POS has a certificate, on the same port as the API, so the handshake
    accepts a connection without one (CERT_OPTIONAL) and the API refuses it in the app. A certificate
    that is presented must chain to the terminal root, or the handshake fails.

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
    ctx.load_verify_locations(cafile=client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
