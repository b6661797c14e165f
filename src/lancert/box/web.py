"""The box's homepage: status, address, settings and log, server-rendered for a phone.

Each load of the homepage runs a check, so reloading the page is how a user retries after fixing a
cause. The same app serves plain HTTP (before the first certificate, the only way to reach the box) and
HTTPS; once the box has a valid certificate, plain HTTP only redirects to the HTTPS address (and refuses
forms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from lancert.box.agent import CertificateKeeper
from lancert.box.diagnose import Address, diagnose
from lancert.box.files import (
    LOG_FILE,
    LOG_LEVELS,
    MAX_FIELD,
    BoxSettings,
    InvalidServiceURL,
    check_service_url,
)
from lancert.devicepages import FORM_PAGE_HEADERS
from lancert.serving.ports import BodyIncomplete, BodyTooLarge, read_body

log = logging.getLogger("lancert.box")

MAX_FORM_BYTES = 8 * 1024
_templates = Environment(loader=PackageLoader("lancert.box", "templates"), autoescape=select_autoescape())


def _refuse(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


def _host_name(host_header: str) -> str:
    """The name or address of a Host header, without port, brackets or trailing dot, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this box (Origin, or Referer when a browser omits Origin).

    A LAN box has no sessions to hang a CSRF token on; browsers send Origin on every cross-site POST, so
    refusing a foreign or missing origin stops another site from changing the settings through the
    user's browser. The Host it is compared with has passed the box's allow-list (see ``own_hosts``), so
    a page on a rebound name (``evil.example`` resolving to the box) never gets here.
    """
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    host = request.headers.get("host", "")
    return bool(host) and origin.lower() == f"{request.url.scheme}://{host}".lower()


def box_too_large(limit: int) -> Response:
    """The box ports' 413 beyond their cap (the serving layer's): the settings form is the largest body."""
    return PlainTextResponse("form too large\n", status_code=413)


def create_app(
    keeper: CertificateKeeper,
    *,
    resolver: Address | None = None,
    zone_server: Address | None = None,
    listen_host: str = "127.0.0.1",
) -> Starlette:
    state_dir: Path = keeper.state_dir

    def own_hosts() -> set[str]:
        """The names and addresses the box answers to: its certificate's name, its LAN and listen
        addresses, loopback. Anything else in Host is DNS rebinding (a foreign name now resolving to the
        box, which makes the attacker's page same-origin with it) or a misdirected request.

        Not Starlette's TrustedHostMiddleware: the box learns its name with its first certificate (the
        list changes while it runs), and that middleware cuts ``[::1]:8080`` at the first colon.
        """
        state = keeper.state
        names = {"127.0.0.1", "::1", "localhost", _host_name(listen_host), state.lan_ip, state.hostname}
        return {n.lower() for n in names if n}

    def render(request: Request) -> HTMLResponse:
        html = _templates.get_template("home.html").render(
            state=keeper.state, problems=keeper.state.problems, settings=BoxSettings.load(state_dir),
            log_levels=LOG_LEVELS, open_details=request.query_params.get("details") == "open",
        )
        return HTMLResponse(html, headers=dict(FORM_PAGE_HEADERS))

    async def homepage(request: Request) -> Response:
        # A load the user made (typed, bookmarked, or from the box's own page) checks, at most once per
        # 10 s; a load another site triggered (an <img>, a link) only shows the page.
        if request.headers.get("sec-fetch-site", "none") in ("none", "same-origin"):
            await keeper.check("homepage", rate_limited=True)
        return render(request)

    async def check_now(request: Request) -> Response:
        if not _same_origin(request):
            return _refuse(403, "refused: the check must be asked from this box's own page")
        await keeper.check("check now")
        return RedirectResponse("/", status_code=303)

    async def save_settings(request: Request) -> Response:
        if not _same_origin(request):
            return _refuse(403, "refused: the form must be sent from this box's own page")
        try:
            body = await read_body(request, MAX_FORM_BYTES)
        except BodyTooLarge:
            return PlainTextResponse("form too large\n", status_code=413)
        except BodyIncomplete:  # gone mid-body (or closed by the body timeout): nobody to answer
            return PlainTextResponse("incomplete form\n", status_code=400)
        try:
            form = parse_qs(body.decode(), max_num_fields=10, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return PlainTextResponse("malformed form\n", status_code=400)

        def field(name: str) -> str | None:
            values = form.get(name)
            return values[0].strip() if values else None

        settings = BoxSettings.load(state_dir)
        server_url, db_uuid, code, level, confirm = (field(n) for n in (
            "server_url", "db_uuid", "enterprise_code", "log_level", "confirm_server_url"))
        for value in (server_url, db_uuid, code, confirm):
            if value is not None and (len(value) > MAX_FIELD or any(ord(c) < 32 for c in value)):
                return PlainTextResponse("a field is too long or holds control characters\n", status_code=400)
        if server_url is not None:
            if server_url:
                try:
                    check_service_url(server_url)
                except InvalidServiceURL as exc:
                    return _refuse(400, str(exc))
            if server_url == settings.server_url:
                settings.pending_server_url = ""
            elif server_url and settings.enterprise_code and not code:
                # The stored code would go to a new address at once: wait for the user's confirmation.
                settings.pending_server_url = server_url
            else:
                settings.server_url, settings.pending_server_url = server_url, ""
        if confirm is not None:
            if not confirm or confirm != settings.pending_server_url:
                return _refuse(400, "no such service URL is waiting for confirmation")
            settings.server_url, settings.pending_server_url = confirm, ""
        if db_uuid is not None:
            settings.db_uuid = db_uuid
        if code:  # an empty password field keeps the stored code: the page never shows it back
            settings.enterprise_code = code
        if level is not None:
            if level not in LOG_LEVELS:
                return PlainTextResponse("unknown log level\n", status_code=400)
            settings.log_level = level
        settings.save(state_dir)
        log.info("settings changed from the homepage (service %s%s, database %s, log level %s)",
                 settings.server_url or "-",
                 f", waiting for confirmation of {settings.pending_server_url}"
                 if settings.pending_server_url else "", settings.db_uuid or "-", settings.log_level)
        await keeper.check("settings saved")
        return RedirectResponse("/", status_code=303)

    async def download_log(request: Request) -> Response:
        for handler in logging.getLogger("lancert").handlers:
            handler.flush()
        path = state_dir / LOG_FILE
        if not path.exists():
            return PlainTextResponse("", headers={"Content-Disposition": 'attachment; filename="box.log"'})
        return FileResponse(path, media_type="text/plain; charset=utf-8", filename="box.log",
                            headers={"Cache-Control": "no-store"})

    async def run_diagnosis(request: Request) -> Response:
        if not _same_origin(request):  # DNS queries and a state write: never for another site's page
            return _refuse(403, "refused: the DNS check must be asked from this box's own page")
        state = keeper.state
        if not state.hostname:
            return RedirectResponse("/", status_code=303)
        result = await asyncio.to_thread(diagnose, state.hostname, state.lan_ip, state.zone,
                                         resolver=resolver, zone_server=zone_server)
        state.dns = {**result.as_dict(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
        state.save(state_dir)
        log.info("DNS diagnosis: %s: %s", result.verdict, result.message)
        return RedirectResponse("/#dns", status_code=303)

    async def status_json(request: Request) -> Response:
        return JSONResponse(keeper.state.as_dict(), headers={"Cache-Control": "no-store"})

    async def metrics(request: Request) -> Response:
        # prometheus-client is loaded by the first scrape, not by every box that is never scraped.
        from lancert.box import metrics as box_metrics

        return Response(box_metrics.render(keeper.state), media_type=box_metrics.CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    app = Starlette(routes=[
        Route("/", homepage, methods=["GET"]),
        Route("/settings", save_settings, methods=["POST"]),
        Route("/log", download_log, methods=["GET"]),
        Route("/check", check_now, methods=["POST"]),
        Route("/diagnose", run_diagnosis, methods=["POST"]),
        Route("/status.json", status_json, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ])

    async def plain_http_redirects(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Plain HTTP is for a box without a certificate; once HTTPS works, send the browser there.

        A form sent over plain HTTP then is refused rather than redirected: the enterprise code in it
        has already crossed the network in clear, and accepting it would keep that habit alive.
        """
        if _host_name(request.headers.get("host", "")) not in own_hosts():
            return _refuse(400, "refused: this box does not answer to that Host name")
        state = keeper.state
        if (request.url.scheme == "http" and state.status == "OK" and state.https_url
                and request.url.path != "/metrics"):  # a scraper need not trust the certificate
            target = state.https_url.rstrip("/") + request.url.path
            if request.method not in ("GET", "HEAD"):
                return _refuse(403, f"refused: this box takes its settings over HTTPS only: {target}")
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse(target, status_code=302)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=plain_http_redirects)
    return app
