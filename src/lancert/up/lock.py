"""One ``lancert up`` per data directory.

Two ``up`` on one directory share the demo POS (``pos/pos.json``), the service's SQLite file and the
box's state: the second repoints the POS at its own terminal and, when it stops, leaves the first one's
POS broken; two cold starts race on creating the CAs and both fail. So ``up`` holds an exclusive
``flock`` on ``<data-dir>/up.lock`` for its whole life. The kernel drops a flock when its holder dies,
however it dies, so a crash or ``kill -9`` never leaves a stale lock behind (a PID file would).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from lancert.errors import LancertError

LOCK_FILE = "up.lock"


class DataDirInUse(LancertError):
    """Another ``lancert up`` holds the data directory."""


def _holder(fd: int) -> str:
    # The winner writes its PID right after taking the lock; give it a moment to get there.
    deadline = time.monotonic() + 1.0
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[Path]:
    """Hold ``<data_dir>/up.lock`` (with this process's PID in it) or fail at once naming the holder."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LancertError(f"{data_dir}: cannot use as data directory ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            who = f"PID {pid}" if pid.isdigit() else "PID unknown"
            raise DataDirInUse(
                f"another 'lancert up' ({who}) is using {data_dir}; stop it first, or give this one "
                "its own --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield data_dir / LOCK_FILE
    finally:
        os.close(fd)  # releases the flock; the file stays (unlinking it would race the next locker)
