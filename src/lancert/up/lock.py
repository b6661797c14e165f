"""One ``lancert up`` per data directory.

Two ``up`` on one directory share the demo POS (``pos/pos.json``), the service's SQLite file and the
box's state: the second repoints the POS at its own terminal and, when it stops, leaves the first one's
POS broken; two cold starts race on creating the CAs and both fail. So ``up`` holds
``<data-dir>/up.lock`` (:func:`lancert.storage.locks.directory_lock`) for its whole life.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from lancert.storage.locks import directory_lock

LOCK_FILE = "up.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[Path]:
    """Hold ``<data_dir>/up.lock`` or fail at once naming the holder."""
    with directory_lock(data_dir, LOCK_FILE, "'lancert up'", "--data-dir") as path:
        yield path
