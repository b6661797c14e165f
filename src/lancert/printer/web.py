"""The printer's web pages and ePOS-Print endpoint: thin HTTP over :class:`lancert.printer.device.Printer`.

- ``/`` is the device's own web configuration (sign-in with ID ``epson`` and the serial number; the
  certificate, Certificate List → create, CSR, import; SSL/TLS → reset to apply). Forms are refused
  without the session cookie, which is ``SameSite=Strict``: another site's page cannot post them through
  the user's browser.
- ``/cgi-bin/epos/service.cgi`` is ePOS-Print (:mod:`lancert.printer.epos`). Browser POS pages call it
  cross-origin with ``Content-Type: text/xml``, which is not a CORS "simple" type, so the browser first
  sends a preflight ``OPTIONS``; it is answered for the origins of ``--allow-origin`` (default: any, as
  the real printers do), including Chromium's Private Network Access header.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lancert.device.certificate import MAX_YEARS, MIN_YEARS, apple_validity_warning
from lancert.devicepages import FORM_PAGE_HEADERS
from lancert.errors import LancertError
from lancert.pki import summarize
from lancert.printer.device import Printer
from lancert.serving.ports import BodyIncomplete, BodyTooLarge, Refusal
from lancert.serving.ports import read_body as serving_read_body
from lancert.trust.page import qr_svg

EPOS_PATH = "/cgi-bin/epos/service.cgi"
# An ePOS-Print job is text and commands; raster images make the biggest ones, well under this.
MAX_EPOS_BODY = 1024 * 1024
MAX_FORM_BYTES = 64 * 1024
SESSION_COOKIE = "epos_session"
# A printer has one or two administrators: the oldest session goes when a new one passes this.
MAX_SESSIONS = 16
# What the ePOS SDK for JavaScript sends besides Content-Type; a preflight asking for others is refused.
ALLOWED_REQUEST_HEADERS = ("content-type", "soapaction", "if-modified-since")
_templates = Environment(loader=PackageLoader("lancert.printer", "templates"), autoescape=select_autoescape())


class Origins:
    """The page origins allowed to print: ``None`` means any (``Access-Control-Allow-Origin: *``)."""

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        self.allowed = None if allowed is None else frozenset(o.rstrip("/").lower() for o in allowed)

    def allows(self, origin: str) -> bool:
        return self.allowed is None or origin.rstrip("/").lower() in self.allowed

    def headers(self, origin: str | None) -> dict[str, str]:
        if self.allowed is None:
            return {"Access-Control-Allow-Origin": "*"}
        return {"Access-Control-Allow-Origin": origin or "", "Vary": "Origin"} if origin else {}


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it passes ``limit`` bytes (declared or counted on the stream) or
    the client leaves mid-body."""
    try:
        return await serving_read_body(request, limit)
    except (BodyTooLarge, BodyIncomplete):
        return None


def too_large(origins: Origins) -> Refusal:
    """The printer port's 413 beyond its cap (the serving layer's), with the CORS headers a browser POS
    needs to read it."""

    def refuse(limit: int) -> ASGIApp:
        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            origin = Headers(scope=scope).get("origin")
            cors = origins.headers(origin) if origin is None or origins.allows(origin) else {}
            response = PlainTextResponse(f"body larger than {limit} bytes\n", status_code=413, headers=cors)
            await response(scope, receive, send)

        return answer

    return refuse


def create_app(printer: Printer, *, origins: Origins, on_reset: Callable[[], None]) -> Starlette:
    sessions: dict[str, None] = {}  # insertion-ordered: the oldest first

    def signed_in(request: Request) -> bool:
        token = request.cookies.get(SESSION_COOKIE, "")
        return bool(token) and token in sessions

    def page(request: Request, *, message: str = "", error: str = "", status: int = 200,
             csr: str = "", background: BackgroundTask | None = None) -> HTMLResponse:
        served, stored = printer.served, printer.stored_certificate()
        html = _templates.get_template("admin.html").render(
            signed_in=signed_in(request), printer=printer, message=message, error=error, csr=csr,
            served=summarize(served) if served else None, stored=summarize(stored) if stored else None,
            pending_reset=stored is not None and stored != served, years=range(MIN_YEARS, MAX_YEARS + 1),
            receipts=printer.receipts(last=5), epos_path=EPOS_PATH,
            listed={k: summarize(v) if v else None for k, v in printer.certificate_list().items()},
            trust_page=printer.trust_page,
            # segno's own markup (paths only; the URL is not in it), so not escaped:
            trust_qr=Markup(qr_svg(printer.trust_page)) if printer.trust_page else None,  # noqa: S704
        )
        return HTMLResponse(html, status_code=status, headers=dict(FORM_PAGE_HEADERS), background=background)

    async def form(request: Request) -> dict[str, str] | Response:
        if not signed_in(request):
            return page(request, error="Sign in first.", status=403)
        body = await read_body(request, MAX_FORM_BYTES)
        if body is None:
            return PlainTextResponse("form too large\n", status_code=413)
        try:
            fields = parse_qs(body.decode(), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return PlainTextResponse("malformed form\n", status_code=400)
        return {k: v[0] for k, v in fields.items()}

    async def home(request: Request) -> Response:
        return page(request)

    async def sign_in(request: Request) -> Response:
        body = await read_body(request, MAX_FORM_BYTES)
        try:
            fields = parse_qs((body or b"").decode(), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        user, password = fields.get("id", [""])[0], fields.get("password", [""])[0]
        if not printer.check_sign_in(user, password, _source(request)):
            return page(request, error="Wrong ID or password (ID: epson; password: the serial number).",
                        status=403)
        token = secrets.token_urlsafe(32)
        sessions[token] = None
        while len(sessions) > MAX_SESSIONS:
            del sessions[next(iter(sessions))]
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def create_certificate(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        years = fields.get("years", "")
        if not (years.isascii() and years.isdigit()):
            return page(request, error="Validity Period: choose a number of years.", status=400)
        try:
            credential = await run_in_threadpool(
                printer.create_self_signed, fields.get("common_name", ""), int(years),
                force=fields.get("replace") == "yes",
            )
        except LancertError as exc:
            return page(request, error=str(exc), status=409 if "already holds" in str(exc) else 400)
        cert = credential.certificate
        warning = apple_validity_warning(cert.not_valid_after_utc - cert.not_valid_before_utc) or ""
        return page(request, message=f"Self-signed certificate created. Choose it under SSL/TLS. {warning}")

    async def make_csr(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        try:
            csr = await run_in_threadpool(printer.make_csr, fields.get("common_name", ""))
        except LancertError as exc:
            return page(request, error=str(exc), status=400)
        return page(request, message="CSR created; the key stays on the printer. Have it signed "
                    "(lancert ca issue --csr FILE), then import the certificate.", csr=csr.decode())

    async def download_csr(request: Request) -> Response:
        csr = printer.pending_csr() if signed_in(request) else None
        if csr is None:
            return PlainTextResponse("no CSR\n", status_code=404)
        return Response(csr, media_type="application/pkcs10",
                        headers={"Content-Disposition": 'attachment; filename="printer.csr"'})

    async def import_certificate(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        try:
            if fields.get("pem", "").strip():
                leaf = await run_in_threadpool(printer.import_pem, fields["pem"].encode())
            elif fields.get("pkcs12", "").strip():
                try:
                    data = base64.b64decode(fields["pkcs12"], validate=False)
                except (binascii.Error, ValueError):
                    return page(request, error="PKCS#12: not Base64.", status=400)
                leaf = await run_in_threadpool(printer.import_pkcs12, data, fields.get("password", ""))
            else:
                return page(request, error="Paste a PEM certificate or a Base64 PKCS#12 file.", status=400)
        except LancertError as exc:
            return page(request, error=str(exc), status=400)
        return page(request, message=f"Imported the certificate for {', '.join(summarize(leaf).names)}. "
                    "Choose it under SSL/TLS.")

    async def choose(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        try:
            cert = await run_in_threadpool(printer.choose_server_certificate, fields.get("certificate", ""))
        except LancertError as exc:
            return page(request, error=str(exc), status=400)
        return page(request, message=f"Server certificate: {', '.join(summarize(cert).names)} "
                    f"({fields['certificate']}). Reset the printer to use it.")

    async def reset(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        return page(request, message="Resetting: the printer restarts with its stored certificate.",
                    background=BackgroundTask(on_reset))

    async def epos(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and not origins.allows(origin):
            return PlainTextResponse("origin not allowed\n", status_code=403)
        cors = origins.headers(origin)
        if request.method == "OPTIONS":
            asked = request.headers.get("access-control-request-headers", "")
            wanted = {h.strip().lower() for h in asked.split(",") if h.strip()}
            if not wanted <= set(ALLOWED_REQUEST_HEADERS):
                return PlainTextResponse("request headers not allowed\n", status_code=403)
            headers = {**cors, "Access-Control-Allow-Methods": "POST, OPTIONS",
                       "Access-Control-Allow-Headers": ", ".join(ALLOWED_REQUEST_HEADERS),
                       "Access-Control-Max-Age": "600"}
            if request.headers.get("access-control-request-private-network") == "true":
                headers["Access-Control-Allow-Private-Network"] = "true"
            return Response(status_code=204, headers=headers)
        body = await read_body(request, MAX_EPOS_BODY)
        if body is None:
            return PlainTextResponse(f"body larger than {MAX_EPOS_BODY} bytes\n", status_code=413,
                                     headers=cors)
        answer = await run_in_threadpool(
            printer.print_job, request.query_params.get("devid"), request.query_params.get("timeout"), body,
            _source(request),
        )
        return Response(answer.to_xml(), media_type="text/xml; charset=utf-8", headers=cors)

    return Starlette(routes=[
        Route("/", home, methods=["GET"]),
        Route("/signin", sign_in, methods=["POST"]),
        Route("/certificate/self-signed", create_certificate, methods=["POST"]),
        Route("/certificate/csr", make_csr, methods=["POST"]),
        Route("/certificate/csr", download_csr, methods=["GET"]),
        Route("/certificate/import", import_certificate, methods=["POST"]),
        Route("/certificate/server", choose, methods=["POST"]),
        Route("/reset", reset, methods=["POST"]),
        Route(EPOS_PATH, epos, methods=["POST", "OPTIONS"]),
    ])
