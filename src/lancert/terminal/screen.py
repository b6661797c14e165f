"""The terminal's screen: the console, and a small page on loopback with the Generate Code button.

On a real terminal the owner taps "Generate Code" on the device. Here the screen is a plain-HTTP app on
127.0.0.1 only; ``lancert terminal code`` is that tap for scripts. Every endpoint wants the token written
to ``screen.json`` (mode 0600) in the state directory, so only the terminal's own user can make or read
codes, and a web page elsewhere cannot press the button (it cannot read the token).
"""

from __future__ import annotations

import hmac
import html
import sys
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from lancert.terminal.codes import CodeView
from lancert.terminal.device import PairingDesk

SCREEN_FILE = "screen.json"
# The largest body the screen port takes (its only form holds the token): the serving layer's cap.
SCREEN_BODY_LIMIT = 4 * 1024
SUCCESS_MESSAGE = "POS Activation Successful"


@dataclass(frozen=True)
class Details:
    """The Details section of the screen: where a POS reaches the terminal."""

    https: str
    wss: str
    port: int
    root_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"https": self.https, "wss": self.wss, "port": self.port, "root_sha256": self.root_sha256}


@dataclass
class Screen:
    """What the terminal shows; prints each change to the console (never keys or bundles)."""

    name: str
    details: Details
    last_paired: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def show_code(self, view: CodeView) -> None:
        self.say(f"POS connection code: {view.code}  (refreshes in {view.seconds_left} s)  "
                 f"HTTPS {self.details.https}  WSS {self.details.wss}  port {self.details.port}")

    def guessing(self, source: str) -> None:
        """Wrong codes from ``source`` reached the per-address limit: the owner should know."""
        self.say(f"Someone at {source} is guessing setup codes: its attempts are refused until the next code")

    def paired(self, pos_id: str) -> None:
        with self._lock:
            self.last_paired = pos_id
        self.say(f"{SUCCESS_MESSAGE} (posId {pos_id})")

    def state(self, view: CodeView | None) -> dict[str, Any]:
        return {
            "terminal": self.name,
            "code": view.code if view else None,
            "seconds_left": view.seconds_left if view else 0,
            "last_paired": self.last_paired,
            "guessing_from": list(view.blocked_sources) if view else [],
            "wrong_attempts": view.wrong_attempts if view else 0,
            "message": f"{SUCCESS_MESSAGE} (posId {self.last_paired})" if self.last_paired else None,
            **self.details.as_dict(),
        }


def create_screen_app(desk: PairingDesk, screen: Screen, token: str) -> Starlette:
    """The screen's three routes on plain Starlette, as the terminal port (:func:`lancert.terminal.app.
    create_app`): FastAPI's import alone was ~0.35 s of the terminal's start."""

    def authorized(request: Request, form_token: str | None = None) -> bool:
        given = form_token or request.query_params.get("token") or ""
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer "):]
        return hmac.compare_digest(given.encode(), token.encode())

    def refused() -> JSONResponse:
        return JSONResponse({"error": "screen token required (see screen.json in the state directory)"}, 403)

    async def state(request: Request) -> Response:
        if not authorized(request):
            return refused()
        return JSONResponse(screen.state(desk.codes.current()))

    async def generate_code(request: Request) -> Response:
        form_token = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = (await request.body())[:1024].decode("ascii", "replace")
            form_token = (parse_qs(body).get("token") or [None])[0]
        if not authorized(request, form_token):
            return refused()
        view = desk.generate_code()
        screen.last_paired = None
        screen.show_code(view)
        if form_token is not None:
            return RedirectResponse(f"/?token={token}", status_code=303)
        return JSONResponse(screen.state(view))

    async def page(request: Request) -> Response:
        if not authorized(request):
            return refused()
        s = screen.state(desk.codes.current())
        e = html.escape
        if s["message"]:
            main = f"<p class=ok>{e(s['message'])}</p>"
        elif s["code"]:
            sources = e(", ".join(s["guessing_from"]))
            guessing = (f"<p class=warn>Someone is guessing setup codes from {sources}"
                        "; those attempts are refused, your POS can still pair.</p>"
                        if s["guessing_from"] else "")
            main = (f"<p class=code>{e(s['code'])}</p><p>Refreshes in {s['seconds_left']} s</p>"
                    f"{guessing}")
        else:
            main = "<p>Tap Generate Code to pair a POS.</p>"
        body = f"""<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=1>
<title>{e(s['terminal'])}</title><style>body{{font-family:sans-serif;max-width:30em;margin:2em auto}}
.code{{font:bold 2.5em monospace;letter-spacing:.15em}}.ok{{color:green;font-weight:bold}}
.warn{{color:#a00;font-weight:bold}}</style></head>
<body><h1>{e(s['terminal'])}</h1>{main}
<form method=post action=/code><input type=hidden name=token value="{e(token)}">
<button>Generate Code</button></form>
<h2>Details</h2><ul><li>HTTPS: {e(s['https'])}</li><li>WSS: {e(s['wss'])}</li><li>Port: {s['port']}</li>
<li>Root CA SHA-256: <small>{e(s['root_sha256'])}</small></li></ul></body></html>"""
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    async def http_error(_: Request, exc: HTTPException) -> Response:
        # An unknown path or method answers as it did on FastAPI: {"detail": ...} with its headers.
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return Starlette(routes=[
        Route("/state", state, methods=["GET"]),
        Route("/code", generate_code, methods=["POST"]),
        Route("/", page, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error})
