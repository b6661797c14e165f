"""An app (or any value) built once, on first need, in a worker thread instead of before a port serves.

Why: a server's slowest start is its imports (FastAPI's OpenAPI models, the ACME server with josepy),
and most of its life a process never needs some of them (``lancert up``, a fleet of boxes that only make
the native call, an ACME server without a browser on ``/docs``). Built in a thread, the import does not
stop the event loop that serves the other routes and ports: the builder holds the GIL only for the
interpreter's switch interval (5 ms) at a time. Requests that arrive during the build wait for the same
build; a build that failed is tried again by the next request that needs it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BuiltOnFirstNeed(Generic[T]):
    """``build()``'s result, made once: :meth:`get` from the event loop (the build in a worker thread),
    :meth:`get_now` from any thread (the build in that thread)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()
        self._pending: asyncio.Future[T] | None = None

    @property
    def built(self) -> bool:
        return self._value is not None

    def get_now(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    async def get(self) -> T:
        if self._value is not None:
            return self._value
        pending = self._pending
        if pending is None or (pending.done() and (pending.cancelled() or pending.exception() is not None)):
            pending = self._pending = asyncio.ensure_future(asyncio.to_thread(self.get_now))
        # Shielded: a client that goes away does not cancel the build the others wait for.
        return await asyncio.shield(pending)
