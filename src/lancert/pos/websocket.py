"""The terminal's API over WSS for synchronous code, on websockets' asyncio client.

Why not websockets' own sync client: on Python < 3.13 it reads the socket in a background thread while
the caller's thread writes to the same ``ssl.SSLSocket``, so one OpenSSL object is driven by two threads
at once. A TLS 1.3 session ticket processed during a write can lose what was written: the WebSocket
upgrade request vanished now and then, and the client then waited for an answer that never came, beyond
every timeout it had (lancert's terminal sends no tickets since be07c84 for that reason, but other
terminals do, as OpenSSL does by default). Measured against a terminal sending OpenSSL's default two
tickets, threads each opening connections one after another: 7 of 2,000 connections (4 threads) and 2 of
2,000 (8 threads) hung for good (over 35 s, with a 30 s open timeout and a 10 s receive timeout); 0 of
2,000 with this class, which also took 10 s where the threaded client took over 100 s.

Here the asyncio client does the I/O on a private event loop in one thread of its own, so only that thread
ever touches the TLS object (asyncio's TLS runs on memory buffers), and it keeps answering the terminal's
pings between the caller's calls. Every call of the caller waits a bounded time (``timeout``), enforced
twice: by ``asyncio.wait_for`` on the loop and by the caller's wait on the result, so not even a stalled
loop can hold the caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

T = TypeVar("T")

# How much longer than its own timeout the caller waits for the loop to report back.
_SLACK = 5.0


class PosWebSocket:
    """One WSS connection to a terminal, used synchronously: ``send``, ``recv``, ``close``.

    Use as a context manager. Every wait is bounded by ``timeout`` (seconds), ``recv`` too unless asked
    to wait without end (``recv(timeout=None)``, e.g. for messages the terminal sends on its own).
    """

    def __init__(
        self, url: str, *, ssl_context: ssl.SSLContext, timeout: float, max_size: int | None
    ) -> None:
        self.timeout = timeout
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lancert-pos-wss", daemon=True)
        self._thread.start()
        try:
            self._connection: ClientConnection = self._call(
                self._open(url, ssl_context, max_size), timeout
            )
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self, url: str, ctx: ssl.SSLContext, max_size: int | None) -> ClientConnection:
        return await connect(url, ssl=ctx, proxy=None, open_timeout=self.timeout,
                             close_timeout=self.timeout, max_size=max_size)

    def _call(self, awaitable: Coroutine[Any, Any, T], timeout: float | None) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(awaitable, timeout)

        future = asyncio.run_coroutine_threadsafe(bounded(), self._loop)
        try:
            return future.result(None if timeout is None else timeout + _SLACK)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from the terminal within {timeout:g} s") from None

    def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``)."""
        self._call(self._connection.send(message), self.timeout)

    _DEFAULT: Any = object()

    def recv(self, timeout: float | None = _DEFAULT) -> str | bytes:
        """The next message; ``TimeoutError`` if none within ``timeout`` seconds (default: the
        connection's ``timeout``; None: wait for one without end)."""
        return self._call(self._connection.recv(), self.timeout if timeout is self._DEFAULT else timeout)

    def close(self) -> None:
        """Close the connection (bounded by ``timeout``) and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._connection.close(), self.timeout)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> PosWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

