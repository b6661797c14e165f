"""One thread that runs the ACME server's signed requests in order (see :attr:`AcmeServer.worker`)."""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
from collections.abc import Callable
from typing import Any

Settle = Callable[[Any, "BaseException | None"], None]


class SerialWorker:
    """Calls run one at a time, in order, in one thread of their own; each outcome is handed to the event
    loop that asked with one ``loop.call_soon_threadsafe(settle, result, error)``.

    Not a ``ThreadPoolExecutor(1)``: its ``submit`` makes a ``Future`` (a ``Condition`` over an ``RLock``),
    a work item, takes two locks and an idle semaphore, and its thread sets that future's result under
    its condition before the loop hears of it. A hop through it cost 70-80 µs of CPU and 160-200 µs of
    wall time on the 2-core bench machine, through a bare ``SimpleQueue`` 45 µs and 55 µs (an asyncio loop
    awaiting a call that does nothing, 5,000 times); a certificate takes five hops. As the executor does,
    the thread is started on the first call and, at the interpreter's exit, the calls already queued are
    run before it ends (:meth:`close`, registered with ``atexit``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, Callable[[], Any], Settle] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], Any], settle: Settle) -> None:
        """Run ``call()`` after the calls submitted before it; ``settle`` gets its result or exception."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    thread.start()
                    atexit.register(self.close)
                    self._thread = thread
        self._queue.put((loop, call, settle))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, call, settle = item
            del item
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as exc:  # handed to the awaiting request, as an executor's future would
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(settle, *outcome)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass
            del loop, call, settle, outcome  # nothing of the last request kept while the queue is empty

    def close(self) -> None:
        """Let the queued calls run, then end the thread (idempotent)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join()
