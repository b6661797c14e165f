"""The ACME port's app from the service's ready line on: the ACME server (:func:`.build.build_acme_server`)
and its ASGI app (:func:`.app.create_acme_app`) built on the port's first request, in a worker
thread (:mod:`lancert.serving.lazy`).

Why: the ACME server's modules (josepy, certbot's ``acme.jws``, the protocol, its SQL store) were
~0.15 s of ``service run``'s CPU before it served, on the critical path of every ``lancert up``, which
starts the ACME port and then never calls it; the first ACME client pays it once instead (~0.1-0.2 s
more on its first request). What can fail from the options, the endpoint's TLS certificate and key, is
still checked before the port serves (:func:`lancert.service.server._acme_endpoint`); what the build does
besides, the nonce secret made once in ``service_state``, can fail only when the database does, and that
request then gets the 503 or 500 problem a request gets when the database fails under it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lancert.service.acmeserver.problems import PROBLEM_CONTENT_TYPE, internal_error, storage_unavailable
from lancert.service.errors import storage_outage
from lancert.serving.lazy import BuiltOnFirstNeed

log = logging.getLogger("lancert.acme")

MAX_BODY_BYTES = 64 * 1024  # the port's body cap (lancert.service.acmeserver.app says why this figure)


class AcmeFront:
    """The ACME port's ASGI app: every request answered by the app ``build()`` makes, built on the
    first request; the port's 413 is ``too_large(app, limit)``, called with the built app (its module
    is the app's: this module imports neither, so that importing it costs nothing)."""

    def __init__(self, build: Callable[[], ASGIApp], too_large: Callable[[ASGIApp, int], ASGIApp]) -> None:
        self.app = BuiltOnFirstNeed(build)
        self._too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = await self._built(scope, receive, send)
        if app is not None:
            await app(scope, receive, send)

    def too_large(self, limit: int) -> ASGIApp:
        """The port's 413 (:class:`lancert.serving.ports.BodyLimit`), the ACME app's problem document."""

        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            app = await self._built(scope, receive, send)
            if app is not None:
                await self._too_large(app, limit)(scope, receive, send)

        return answer

    async def _built(self, scope: Scope, receive: Receive, send: Send) -> ASGIApp | None:
        """The app; None when the build failed, after answering the request with the problem."""
        try:
            return await self.app.get()
        except Exception as exc:
            reason = storage_outage(exc)
            if reason is not None:
                log.warning("database unavailable on the ACME port's first request, answered 503: %s",
                            reason)
                problem = storage_unavailable()
            else:
                log.error("cannot build the ACME server: %s", exc, exc_info=exc)
                problem = internal_error()
            if scope["type"] == "http":
                response = Response(json.dumps(problem.to_json()), status_code=problem.status,
                                    media_type=PROBLEM_CONTENT_TYPE, headers=problem.headers)
                await response(scope, receive, send)
            return None
