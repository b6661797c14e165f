"""``lancert trust serve``: one LAN page from which each device gets the right file with the right steps.

A tablet has no shell: the natural way onto it is one page opened from a QR code. The page recognises the
visiting device from its User-Agent and offers the file its certificate installer takes
(:data:`lancert.trust.guide.PAGE_FILES`) with the steps of ``lancert trust guide`` (the same texts, from
:func:`lancert.trust.guide.guide_for`), every other platform one link away. It is plain HTTP on purpose —
the device trusts nothing yet, so HTTPS would only add a warning to click through — and says so, with each
certificate's SHA-256 fingerprint to compare against the one the shop's computer printed.

User-Agents, checked in this order because each later token also appears in the earlier ones' strings:
``iPhone``/``iPad``/``iPod`` (iOS says "like Mac OS X"), ``Android`` (says "Linux"), ``Windows``,
``Macintosh`` (iPadOS 13+ Safari asks for desktop pages and says Macintosh too: the Mac page links the
iOS profile), ``Linux``/``X11``/``CrOS``. Anything else gets the list of platforms.

No script, no external asset: the page is HTML with inline CSS, the QR code is ``/qr.png`` of the same
server (segno), and the Content-Security-Policy (``default-src 'none'``) says so to the browser. The QR
code and the links carry the URL given at start (``--url``), never the request's Host header, which any
client chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import segno
from cryptography import x509
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from lancert.errors import LancertError
from lancert.pki import export_certificate, fingerprint_sha256
from lancert.serving.ports import BackgroundPorts, Port, serve_ports
from lancert.trust.guide import PAGE_FILES, Guide, Platform, certificate_label, guide_for
from lancert.trust.store import is_ca

DEVICE_NAMES: dict[Platform, str] = {
    Platform.IOS: "iPhone or iPad",
    Platform.ANDROID: "Android phone or tablet",
    Platform.WINDOWS: "Windows PC",
    Platform.MACOS: "Mac",
    Platform.LINUX: "Linux computer",
}
_USER_AGENTS: tuple[tuple[Platform, tuple[str, ...]], ...] = (
    (Platform.IOS, ("iPhone", "iPad", "iPod")),
    (Platform.ANDROID, ("Android",)),
    (Platform.WINDOWS, ("Windows",)),
    (Platform.MACOS, ("Macintosh", "Mac OS X")),
    (Platform.LINUX, ("Linux", "X11", "CrOS")),
)
MAX_USER_AGENT = 1024  # longer ones are not read: a real browser's is a few hundred characters
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Nothing but this server, and no script at all (connect-src lets a browser's tools fetch a file).
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                               "style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
BETTER_WITH_A_ROOT = (
    "is a device's own certificate, not a CA: every device must import it again whenever it changes, and "
    "Android refuses it as a CA certificate. A shop root would be better: one import per device covers "
    "every printer and terminal, renewals included. Make one with: lancert ca init --dir shop-ca --name "
    "\"Your shop\"; give each device a certificate from it (lancert device create --ip IP --dir DIR --ca "
    "shop-ca, or lancert ca issue --dir shop-ca --csr FILE -o OUT); then serve the root: lancert trust "
    "serve shop-ca/root.pem"
)


def platform_from_user_agent(user_agent: str) -> Platform | None:
    """The platform a browser's User-Agent names, or None (see the module docstring for the order)."""
    user_agent = user_agent[:MAX_USER_AGENT]
    for platform, tokens in _USER_AGENTS:
        if any(token in user_agent for token in tokens):
            return platform
    return None


def _safe_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:48] or "certificate"


@dataclass(frozen=True)
class Offered:
    """One certificate the page offers, as ``index`` in the URLs, in every platform's format."""

    index: int
    certificate: x509.Certificate
    stem: str

    @property
    def label(self) -> str:
        return certificate_label(self.certificate)

    @property
    def sha256(self) -> str:
        return fingerprint_sha256(self.certificate)

    @property
    def is_ca(self) -> bool:
        return is_ca(self.certificate)

    def file_name(self, platform: Platform) -> str:
        return self.stem + PAGE_FILES[platform][1]

    def path(self, platform: Platform) -> str:
        return f"/{self.index}/{platform.value}/{self.file_name(platform)}"

    def guide(self, platform: Platform) -> Guide:
        fmt = PAGE_FILES[platform][0]
        return guide_for(self.certificate, platform, Path(self.file_name(platform)), fmt, on_device=True)

    def body(self, platform: Platform) -> bytes:
        return export_certificate(self.certificate, PAGE_FILES[platform][0])


def offered(files: list[tuple[Path, x509.Certificate]]) -> list[Offered]:
    """The certificates to offer, each named after its file (made unique: two ``root.pem`` differ)."""
    result: list[Offered] = []
    seen: set[str] = set()
    for index, (path, cert) in enumerate(files, 1):
        stem = _safe_stem(path.stem)
        if stem.lower() in seen:
            stem = f"{stem}-{index}"
        seen.add(stem.lower())
        result.append(Offered(index, cert, stem))
    return result


class TrustPage:
    """The page's ASGI app: ``/`` (``?os=`` to choose), ``/qr.png`` and each file, for ``url``."""

    def __init__(self, files: list[tuple[Path, x509.Certificate]], url: str) -> None:
        if not files:
            raise ValueError("trust serve needs at least one certificate")
        self.certificates = offered(files)
        self.url = url
        self._templates = Environment(loader=PackageLoader("lancert.trust", "templates"),
                                      autoescape=select_autoescape(default=True))

    @cached_property
    def qr_png(self) -> bytes:
        out = io.BytesIO()
        segno.make_qr(self.url, error="m").save(out, kind="png", scale=6, border=4)
        return out.getvalue()

    @cached_property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self._page, methods=["GET"]),
            Route("/qr.png", self._qr, methods=["GET"]),
            Route("/{index:int}/{platform}/{name}", self._file, methods=["GET"]),
        ])

    def render(self, platform: Platform | None, detected: bool) -> str:
        return self._templates.get_template("trust_page.html").render(
            url=self.url, platform=platform, detected=detected, platforms=list(Platform),
            device_names=DEVICE_NAMES, certificates=self.certificates, better_with_a_root=BETTER_WITH_A_ROOT,
            ios=Platform.IOS,
        )

    async def _page(self, request: Request) -> Response:
        chosen = request.query_params.get("os")
        if chosen is not None:
            try:
                platform: Platform | None = Platform(chosen)
            except ValueError:
                return _not_found()
            detected = False
        else:
            platform = platform_from_user_agent(request.headers.get("user-agent", ""))
            detected = platform is not None
        return HTMLResponse(self.render(platform, detected), headers=HEADERS)

    async def _qr(self, _request: Request) -> Response:
        return Response(self.qr_png, media_type="image/png", headers=HEADERS)

    async def _file(self, request: Request) -> Response:
        index, name = request.path_params["index"], request.path_params["name"]
        try:
            platform = Platform(request.path_params["platform"])
        except ValueError:
            return _not_found()
        if not 1 <= index <= len(self.certificates):
            return _not_found()
        offer = self.certificates[index - 1]
        if name != offer.file_name(platform):
            return _not_found()
        headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(offer.body(platform), media_type=PAGE_FILES[platform][2], headers=headers)


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404, headers=HEADERS)


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as inline SVG markup, for a page whose CSP allows no image source (the
    printer's admin page): an ``<svg>`` element is part of the document, not a fetched image."""
    return segno.make_qr(url, error="m").svg_inline(scale=4, border=4)


def qr_text(url: str) -> str:
    """The QR code of ``url`` drawn with block characters, for a terminal (``up``'s summary, ``serve``)."""
    out = io.StringIO()
    segno.make_qr(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


START_TIMEOUT = 30.0
# The page takes no body (GETs only).
PAGE_BODY_LIMIT = 1024


class PageServer:
    """The page on a listening socket (:func:`lancert.loopback.listen_tcp`), served by the one serving
    layer (connection cap, eviction, timeouts, one log format); in the caller's loop (:meth:`serve`) or a
    thread (``up``)."""

    def __init__(self, page: TrustPage, listener: socket.socket) -> None:
        self.page = page
        self.served = Port("trust page", page.app, listener, PAGE_BODY_LIMIT)
        self.listener = self.served.listener
        self.port: int = self.served.port
        self._background: BackgroundPorts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (or SIGINT/SIGTERM); ``on_ready()`` once the port answers."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await serve_ports([self.served], on_ready, stop=self._stop)

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)

    def start_in_thread(self) -> PageServer:
        """Serve in a background thread; returns once the port answers."""
        try:
            self._background = BackgroundPorts([self.served], "trust-page").start(START_TIMEOUT)
        except TimeoutError:
            raise LancertError(f"the trust page did not start within {START_TIMEOUT:g} s") from None
        return self
