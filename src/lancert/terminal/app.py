"""The terminal's HTTPS/WSS port: pairing (no client certificate), root CA, and the mTLS transaction API.

One port serves both, as the PAX protocol has it (``https://<terminal>:<port>/``): the handshake asks for
a client certificate but does not require one (see :func:`lancert.terminal.tls.server_ssl_context`), and
:func:`calling_pos` refuses API calls without a current one. The certificate is checked against
``pos.json`` on every request and every WebSocket message, so an unpaired or re-paired POS stops at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from lancert.errors import LancertError
from lancert.pki import utcnow
from lancert.serving.ports import BodyIncomplete, BodyTooLarge
from lancert.serving.ports import read_body as serving_read_body
from lancert.terminal.device import CodeRefused, PairingDesk
from lancert.terminal.schemas import (
    API_BODY_LIMIT,
    CERT_NOT_CURRENT,
    NO_CLIENT_CERT,
    PAIR_BODY_LIMIT,
    UNAUTHORIZED_CODE,
    PairRequest,
    SaleRequest,
    TerminalError,
    WsMessage,
    parse_json_object,
    parse_model,
)
from lancert.terminal.tls import client_certificate
from lancert.wire.pairing import InvalidPosId

log = logging.getLogger("lancert.terminal")

PEM_MEDIA_TYPE = "application/x-pem-file"
# A POS that opens the pairing WebSocket and says nothing is dropped after this long.
WS_PAIR_TIMEOUT = 30.0


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (never read whole first)."""
    try:
        return await serving_read_body(request, limit)
    except BodyTooLarge:
        raise TerminalError(413, f"body: larger than {limit} bytes") from None
    except BodyIncomplete:  # gone mid-body (or closed by the body timeout): nobody to answer
        raise TerminalError(400, "body: incomplete") from None


def terminal_too_large(limit: int) -> JSONResponse:
    """The terminal port's 413 beyond its cap (the serving layer's), in the terminal's error shape."""
    return JSONResponse(TerminalError(413, f"body: larger than {limit} bytes").body(), status_code=413)


def create_app(desk: PairingDesk, *, name: str) -> Starlette:
    """The ASGI app of the terminal port; ``desk`` decides pairings, its registry answers "who is this".

    Plain Starlette, as the box's and the printer's pages: every handler takes the raw request and
    validates its body itself (:func:`parse_model`), so FastAPI had nothing to do here but cost the
    terminal ~0.35 s of its start importing (its OpenAPI models), which ``lancert up`` waits for."""
    registry = desk.state.registry

    async def terminal_error(request: Request, exc: TerminalError) -> Response:
        _log_refusal(request.scope, exc)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail).splitlines()[0]}, status_code=exc.status_code)

    def calling_pos(scope: dict[str, Any]) -> str:
        cert = client_certificate(scope)
        if cert is None:
            raise NO_CLIENT_CERT
        pos_id = registry.is_current(cert)
        if pos_id is None:
            raise CERT_NOT_CURRENT
        return pos_id

    async def pair(raw: bytes | str, client: Any) -> bytes:
        request = parse_model(PairRequest, parse_json_object(raw))
        source = client.host if client is not None else "unknown"
        try:
            result = await run_in_threadpool(desk.pair, request.posId, request.setupCode, source)
        except CodeRefused:
            raise UNAUTHORIZED_CODE from None
        except InvalidPosId as exc:
            raise TerminalError(400, str(exc)) from None
        return result.bundle

    def status_body(pos_id: str) -> dict[str, Any]:
        return {"posId": pos_id, "terminal": name, "state": "ready",
                "time": utcnow().isoformat(timespec="seconds")}

    def sale_body(pos_id: str, sale: SaleRequest) -> dict[str, Any]:
        # Echo-style: a real terminal would now talk to the card; here the request comes back approved.
        return {"posId": pos_id, "saleId": str(uuid.uuid4()), "result": "approved", "amount": sale.amount,
                "currency": sale.currency, "reference": sale.reference}

    async def index(_: Request) -> Response:
        return JSONResponse({
            "terminal": name, "pair": "POST / {\"posId\", \"setupCode\"} or the same JSON over wss://",
            "rootCa": "/root-ca.pem", "api": ["/api/v1/status", "/api/v1/sale", "/api/v1/ws"]})

    async def pair_https(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise TerminalError(415, "body: must be sent as Content-Type: application/json")
        bundle = await pair(await read_body(request, PAIR_BODY_LIMIT), request.client)
        return Response(bundle, media_type=PEM_MEDIA_TYPE, headers={"Cache-Control": "no-store"})

    async def root_ca(_: Request) -> Response:
        return Response(desk.state.root_pem(), media_type=PEM_MEDIA_TYPE)

    async def status(request: Request) -> Response:
        return JSONResponse(status_body(calling_pos(request.scope)))

    async def sale(request: Request) -> Response:
        pos_id = calling_pos(request.scope)
        body = parse_model(SaleRequest, parse_json_object(await read_body(request, API_BODY_LIMIT)))
        return JSONResponse(sale_body(pos_id, body))

    async def pair_wss(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), WS_PAIR_TIMEOUT)
            if len(raw) > PAIR_BODY_LIMIT:
                raise TerminalError(413, f"body: larger than {PAIR_BODY_LIMIT} bytes")
            bundle = await pair(raw, websocket.client)
        except TerminalError as exc:
            _log_refusal(websocket.scope, exc)
            await websocket.send_text(json.dumps({"status": exc.status, **exc.body()}))
            await websocket.close(code=1008 if exc.status in (401, 403) else 1007)
            return
        except (TimeoutError, WebSocketDisconnect, KeyError):
            await _close_quietly(websocket, 1008)
            return
        await websocket.send_text(bundle.decode())
        await websocket.close(code=1000)

    async def api_wss(websocket: WebSocket) -> None:
        try:
            pos_id = calling_pos(websocket.scope)
        except TerminalError as exc:
            _log_refusal(websocket.scope, exc)
            await websocket.close(code=1008)  # before accept: the client gets HTTP 403
            return
        await websocket.accept()
        try:
            while True:
                raw = await websocket.receive_text()
                try:
                    if calling_pos(websocket.scope) != pos_id:
                        raise CERT_NOT_CURRENT
                except TerminalError as exc:
                    _log_refusal(websocket.scope, exc)
                    await websocket.send_text(json.dumps({"status": exc.status, **exc.body()}))
                    await websocket.close(code=1008)
                    return
                await websocket.send_text(json.dumps(_ws_answer(raw, pos_id, status_body, sale_body)))
        except (WebSocketDisconnect, KeyError):
            return

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/", pair_https, methods=["POST"]),
            Route("/root-ca.pem", root_ca, methods=["GET"]),
            Route("/api/v1/status", status, methods=["GET"]),
            Route("/api/v1/sale", sale, methods=["POST"]),
            WebSocketRoute("/", pair_wss),
            WebSocketRoute("/api/v1/ws", api_wss),
        ],
        exception_handlers={TerminalError: terminal_error, StarletteHTTPException: http_error},
    )


def _ws_answer(raw: str, pos_id: str, status_body: Any, sale_body: Any) -> dict[str, Any]:
    try:
        if len(raw) > API_BODY_LIMIT:
            raise TerminalError(413, f"body: larger than {API_BODY_LIMIT} bytes")
        value = parse_json_object(raw)
        message = parse_model(WsMessage, value)
        if message.type == "status":
            return {"type": "status", "status": 200, **status_body(pos_id)}
        fields = {k: v for k, v in value.items() if k != "type"}
        return {"type": "sale", "status": 200, **sale_body(pos_id, parse_model(SaleRequest, fields))}
    except TerminalError as exc:
        return {"status": exc.status, **exc.body()}
    except LancertError as exc:
        return {"status": 400, "error": str(exc).splitlines()[0]}


def _log_refusal(scope: dict[str, Any], exc: TerminalError) -> None:
    """One line per refused request: what, from where, the status and why; the posId of a client
    certificate the terminal no longer honours (unpaired or paired again). Never a code or a key."""
    cert = client_certificate(scope)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if cert is not None else []
    who = f" posId {names[0].value}" if names else ""
    client = scope.get("client") or ("?", 0)
    reason = str(exc.body().get("error", "")).translate({c: " " for c in range(32)})[:200]
    log.info("refused %s%s from %s%s: %d %s", "WSS " if scope.get("type") == "websocket" else "",
             scope.get("path", "?"), client[0], who, exc.status, reason)


async def _close_quietly(websocket: WebSocket, code: int) -> None:
    try:
        await websocket.close(code=code)
    except (RuntimeError, WebSocketDisconnect):
        pass
