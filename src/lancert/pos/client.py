"""The POS side of paired mutual TLS: pair once with a terminal's setup code, then call it.

A POS application imports :class:`PosClient`::

    from lancert.pos import PosClient

    pos = PosClient.pair("https://192.168.1.40:8443/", pos_id="123", setup_code="K7M2Q9XD",
                         directory="/var/lib/pos/terminal")          # once; the cashier types the code
    pos = PosClient("/var/lib/pos/terminal")                        # every later start
    pos.status()                                                    # {"posId": "123", ...}
    pos.sale(1250, "EUR", reference="order-17")
    with pos.websocket() as ws:                                     # the same API over WSS
        ws.send('{"type": "status"}'); print(ws.recv())

Pairing verifies everything it receives before storing it: the terminal's server certificate (against the
root given with ``ca``, or the root fetched from the terminal on first use and shown by fingerprint), the
bundle's shape (PKCS#1 RSA key, then client, intermediate and root), the chain (clientAuth, to that same
root), that the key belongs to the certificate, and that the certificate names this posId.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lancert.errors import LancertError
from lancert.pki import (
    ChainError,
    PKIError,
    fingerprint_sha256,
    is_self_issued,
    load_certificates,
    load_private_key_pem,
    pem,
    read_certificates,
    verify_client_chain,
)
from lancert.pki.keys import public_key_matches
from lancert.storage.files import Credential, CredentialFiles, read_json, write_certificates, write_json
from lancert.wire.pairing import check_pos_id, pos_id_of

if TYPE_CHECKING:
    from lancert.pos.websocket import PosWebSocket

# websockets (with its asyncio client, ~45 ms) is imported by the two methods that speak WSS: 'lancert
# up' checks its POS's pairing with one HTTPS call and never needs it.

POS_FILE = "pos.json"
CA_FILE = "ca.pem"
CHAIN_FILE = "chain.pem"
PKCS1_HEADER = b"-----BEGIN RSA PRIVATE KEY-----"
MAX_BUNDLE_BYTES = 64 * 1024
TIMEOUT = 30.0


class PairingFailed(LancertError):
    """The terminal refused, or what it sent cannot be trusted."""


@dataclass(frozen=True)
class PairingBundle:
    """What a terminal answers to a pairing: the POS key and its chain (client, intermediate, root)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate


def parse_bundle(data: bytes, *, pos_id: str, anchor: x509.Certificate) -> PairingBundle:
    """Check a pairing bundle field by field against the root the terminal was verified with."""
    if len(data) > MAX_BUNDLE_BYTES or not data.lstrip().startswith(PKCS1_HEADER):
        raise PairingFailed("terminal answer is not a pairing bundle (expected a PKCS#1 RSA key first)")
    try:
        key = load_private_key_pem(data)
        certs = load_certificates(data)
    except PKIError as exc:
        raise PairingFailed(f"unreadable pairing bundle: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise PairingFailed("pairing bundle key is not an RSA key of at least 2048 bits")
    if len(certs) != 3:
        raise PairingFailed(f"pairing bundle holds {len(certs)} certificates, "
                            "expected client, intermediate and root")
    leaf, intermediate, root = certs
    if root != anchor:
        raise PairingFailed("pairing bundle root is not the root CA the terminal was verified with")
    try:
        verify_client_chain(leaf, anchors=[anchor], intermediates=[intermediate])
    except ChainError as exc:
        raise PairingFailed(f"pairing bundle chain does not verify: {exc}") from None
    if not public_key_matches(key, leaf.public_key()):
        raise PairingFailed("pairing bundle key does not belong to its certificate")
    if pos_id_of(leaf) != pos_id:
        raise PairingFailed(f"pairing bundle certificate does not name posId {pos_id}")
    return PairingBundle(key, leaf, intermediate, root)


def _base_url(url: str) -> str:
    """``https://host:port/`` of a terminal given as https:// or wss:// with any path."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "wss") or not parts.hostname:
        raise LancertError(f"terminal URL must be https://HOST:PORT/ or wss://HOST:PORT/, not {url!r}")
    return urlunsplit(("https", parts.netloc, "/", "", ""))


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("wss", parts.netloc, parts.path or "/", parts.query, ""))


def _transport_problem(exc: BaseException) -> str:
    """What went wrong on the way to the terminal, in words; a failed certificate check names its fix
    instead of OpenSSL's ``[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            why = seen.verify_message or "verification failed"
            return (f"the terminal's certificate does not verify against the root this POS trusts ({why}); "
                    "is --ca this terminal's root? Compare its SHA-256 with the terminal's screen "
                    "('lancert terminal root-ca')")
        seen = seen.__cause__ or seen.__context__
    return str(exc)


def _verifying_context(anchor_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=anchor_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def fetch_root_ca(terminal_url: str) -> x509.Certificate:
    """The terminal's root CA, fetched without verification (trust on first use: compare its fingerprint
    with the one on the terminal's screen). Only a self-signed CA certificate is accepted."""
    url = urljoin(_base_url(terminal_url), "/root-ca.pem")
    try:
        response = httpx.get(url, verify=False, timeout=TIMEOUT, trust_env=False)  # noqa: S501 - TOFU, see doc
    except httpx.HTTPError as exc:
        raise PairingFailed(f"cannot reach terminal at {url}: {exc}") from None
    if response.status_code != 200 or len(response.content) > MAX_BUNDLE_BYTES:
        raise PairingFailed(f"terminal answered {response.status_code} for its root CA")
    try:
        certs = load_certificates(response.content)
    except PKIError as exc:
        raise PairingFailed(f"terminal root CA unreadable: {exc}") from None
    root = certs[0]
    if len(certs) != 1 or not is_self_issued(root):
        raise PairingFailed("terminal root CA is not one self-signed certificate")
    return root


def _error_line(response: httpx.Response) -> str:
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        message = None
    return f"terminal answered {response.status_code}" + (f": {message}" if message else "")


class PosClient:
    """A POS paired with one terminal: its key, certificate and the terminal's root, in ``directory``.

    ``directory`` holds ``key.pem`` (mode 0600), ``cert.pem`` (the client certificate followed by the
    intermediate: what the POS presents), ``chain.pem`` (intermediate and root, as received), ``ca.pem``
    (the terminal's root, which verifies the terminal) and ``pos.json`` (posId and terminal URL).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        info = read_json(self.directory / POS_FILE)
        if not isinstance(info, dict) or "terminal" not in info or "posId" not in info:
            raise LancertError(f"{self.directory}: not paired (run: lancert pos pair)")
        self.terminal_url: str = info["terminal"]
        self.pos_id: str = info["posId"]
        files = CredentialFiles(self.directory)
        files.recover()
        files.read()  # one-line error now if the key and certificate are missing or do not match
        self._ssl = _verifying_context((self.directory / CA_FILE).read_bytes())
        self._ssl.load_cert_chain(str(files.cert_path), str(files.key_path))
        self._http = httpx.Client(verify=self._ssl, timeout=TIMEOUT, trust_env=False)

    # -- pairing -------------------------------------------------------------------------------------

    @classmethod
    def pair(
        cls,
        terminal_url: str,
        *,
        pos_id: str,
        setup_code: str,
        directory: Path | str,
        ca: Path | str | bytes | None = None,
    ) -> PosClient:
        """Pair over HTTPS (``https://`` URL) or WSS (``wss://`` URL); store the credential; return a client.

        ``ca`` is the terminal's root (a file or PEM); without it the root is fetched from the terminal on
        first use (:func:`fetch_root_ca`) and kept in ``ca.pem``.
        """
        check_pos_id(pos_id)
        if ca is None:
            anchor = fetch_root_ca(terminal_url)
        else:
            # A file goes through read_certificates: its errors name it ("x.pem: file is empty").
            anchor = (load_certificates(ca) if isinstance(ca, bytes) else read_certificates(ca))[0]
        anchor_pem = pem(anchor)
        ctx = _verifying_context(anchor_pem)
        body = {"posId": pos_id, "setupCode": setup_code}
        if urlsplit(terminal_url).scheme == "wss":
            answer = cls._pair_over_websocket(_ws_url(terminal_url), body, ctx)
        else:
            answer = cls._pair_over_https(_base_url(terminal_url), body, ctx)
        bundle = parse_bundle(answer, pos_id=pos_id, anchor=anchor)
        directory = Path(directory)
        write_certificates(directory / CA_FILE, [anchor])
        write_certificates(directory / CHAIN_FILE, [bundle.intermediate, bundle.root])
        CredentialFiles(directory).write(Credential((bundle.certificate, bundle.intermediate), bundle.key))
        write_json(directory / POS_FILE, {
            "posId": pos_id, "terminal": _base_url(terminal_url),
            "certificate_sha256": fingerprint_sha256(bundle.certificate),
            "root_sha256": fingerprint_sha256(anchor),
        })
        return cls(directory)

    @staticmethod
    def _pair_over_https(base_url: str, body: dict[str, str], ctx: ssl.SSLContext) -> bytes:
        try:
            response = httpx.post(base_url, json=body, verify=ctx, timeout=TIMEOUT, trust_env=False)
        except httpx.HTTPError as exc:
            raise PairingFailed(f"cannot pair with {base_url}: {_transport_problem(exc)}") from None
        if response.status_code != 200:
            raise PairingFailed(_error_line(response))
        return response.content

    @staticmethod
    def _pair_over_websocket(url: str, body: dict[str, str], ctx: ssl.SSLContext) -> bytes:
        from websockets.exceptions import WebSocketException

        from lancert.pos.websocket import PosWebSocket

        try:
            with PosWebSocket(url, ssl_context=ctx, timeout=TIMEOUT, max_size=MAX_BUNDLE_BYTES) as ws:
                ws.send(json.dumps(body))
                answer = ws.recv()
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise PairingFailed(f"cannot pair over {url}: {_transport_problem(exc)}") from None
        data = answer.encode() if isinstance(answer, str) else answer
        if not data.lstrip().startswith(b"-----BEGIN"):
            try:
                error = json.loads(data)
            except ValueError:
                error = {}
            message = error.get("error") if isinstance(error, dict) else None
            status = error.get("status") if isinstance(error, dict) else None
            raise PairingFailed(f"terminal answered {status}: {message}" if message else "terminal refused")
        return data

    # -- paired calls --------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """A full URL on the paired terminal for ``/api/v1/...``; full URLs pass unchanged."""
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.terminal_url, path_or_url)

    def request(self, method: str, path_or_url: str, *, data: Any = None) -> httpx.Response:
        """One mutual-TLS request; ``data`` is sent as JSON. Raises only on transport failure."""
        try:
            return self._http.request(method, self.url(path_or_url), json=data)
        except httpx.HTTPError as exc:
            raise LancertError(
                f"cannot reach terminal at {self.url(path_or_url)}: {_transport_problem(exc)}") from None

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise LancertError(_error_line(response))
        return response.json()

    def status(self) -> dict[str, Any]:
        """``GET /api/v1/status``: the terminal's state and the posId it knows this POS by."""
        return self._json(self.request("GET", "/api/v1/status"))

    def sale(self, amount: int, currency: str = "EUR", *, reference: str | None = None) -> dict[str, Any]:
        """``POST /api/v1/sale`` with ``amount`` in minor units."""
        return self._json(self.request("POST", "/api/v1/sale", data={
            "amount": amount, "currency": currency, "reference": reference,
        }))

    def websocket(self, path_or_url: str = "/api/v1/ws") -> PosWebSocket:
        """The API over WSS with this POS's certificate; use as a context manager. Every wait is bounded
        (30 s): it runs on websockets' asyncio client, never on its threaded one, which can hang for good
        against a terminal that sends TLS 1.3 session tickets (:mod:`lancert.pos.websocket`)."""
        from lancert.pos.websocket import PosWebSocket

        return PosWebSocket(_ws_url(self.url(path_or_url)), ssl_context=self._ssl, timeout=TIMEOUT,
                            max_size=MAX_BUNDLE_BYTES)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PosClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
