"""One process per state directory: an exclusive ``flock`` held for the process's whole life.

``lancert up`` (``<data-dir>/up.lock``), ``service run`` on a SQLite data directory
(``<data-dir>/service.lock``, and ``FILE.lock`` beside a ``--db sqlite:///FILE`` outside it),
``box run`` (``<state-dir>/box.lock``) and ``terminal run`` (``<state-dir>/terminal.lock``) each hold
one: two of them on one directory would write the same files at once (two services racing to make the
CA, two boxes renewing into one ``cert.pem``) without a word. PostgreSQL instances share a database by
design, so a service on ``--db postgresql://`` takes none. The kernel drops a flock when its holder dies,
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

# The lock file of each kind of long-running process, in the directory it owns.
SERVICE_LOCK, BOX_LOCK, TERMINAL_LOCK = "service.lock", "box.lock", "terminal.lock"


class DirectoryInUse(LancertError):
    """Another process holds the directory's lock."""


def _holder(fd: int) -> str:
    # The winner writes its PID right after taking the lock; give it a moment to get there.
    deadline = time.monotonic() + 1.0
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def lock_holder(directory: Path, lock_name: str) -> str | None:
    """The PID (as written) of a live process holding ``directory/lock_name``, or None when nobody does:
    how ``up`` notices processes left running by an earlier run before it starts beside them."""
    try:
        fd = os.open(directory / lock_name, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd) or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def directory_lock(directory: Path, lock_name: str, holder: str, option: str) -> Iterator[Path]:
    """Hold ``directory/lock_name`` (with this process's PID in it) or fail at once naming the holder:
    ``holder`` is what holds such a lock (``'lancert up'``), ``option`` the option that gives another
    directory (``--data-dir``)."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / lock_name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LancertError(f"{directory}: cannot use this directory ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            who = f"PID {pid}" if pid.isdigit() else "PID unknown"
            raise DirectoryInUse(
                f"another {holder} ({who}) is using {directory}; stop it first, or give this one its own "
                f"{option}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory / lock_name
    finally:
        os.close(fd)  # releases the flock; the file stays (unlinking it would race the next locker)
