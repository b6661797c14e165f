"""Which certificate each paired POS holds now: the file every mTLS request is checked against.

A POS paired again gets a new certificate and the old one must stop working at once; an unpaired POS
must stop at once too. So the terminal remembers one certificate (serial and SHA-256) per posId in
``pos.json`` and compares the presented certificate on every request and WebSocket message. The file is
written atomically through :mod:`lancert.storage`, under an ``flock`` so that ``terminal unpair`` (another
process) and a pairing never lose each other's update; reads are lock-free and cached by file identity.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509

from lancert.errors import LancertError
from lancert.pki import fingerprint_sha256, utcnow
from lancert.storage.files import read_json, write_json
from lancert.wire.pairing import pos_id_of

REGISTRY_FILE = "pos.json"


class PosRegistry:
    """``pos.json`` in a terminal's state directory: posId → the one certificate it may use."""

    def __init__(self, state_dir: Path | str) -> None:
        self.path = Path(state_dir) / REGISTRY_FILE
        self._lock_path = Path(state_dir) / ".pos.lock"
        self._cache_key: tuple[int, int, int] | None = None
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entries(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._cache_lock:
            if key != self._cache_key:
                data = read_json(self.path, default={})
                self._cache = data.get("pos", {}) if isinstance(data, dict) else {}
                self._cache_key = key
            return self._cache

    def record(self, pos_id: str, cert: x509.Certificate) -> None:
        """Make ``cert`` the only certificate ``pos_id`` may use from now on."""
        with self._exclusive():
            data = read_json(self.path, default={}) or {}
            pos = data.setdefault("pos", {})
            pos[pos_id] = {
                "serial": format(cert.serial_number, "x"),
                "sha256": fingerprint_sha256(cert),
                "paired_at": utcnow().isoformat(timespec="seconds"),
                "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            }
            write_json(self.path, data)

    def remove(self, pos_id: str) -> None:
        with self._exclusive():
            data = read_json(self.path, default={}) or {}
            if pos_id not in data.get("pos", {}):
                raise LancertError(f"no POS paired with posId {pos_id!r}")
            del data["pos"][pos_id]
            write_json(self.path, data)

    def is_current(self, cert: x509.Certificate) -> str | None:
        """The posId when ``cert`` is the certificate that POS holds now; None if replaced or revoked."""
        pos_id = pos_id_of(cert)
        if pos_id is None:
            return None
        entry = self.entries().get(pos_id)
        if not isinstance(entry, dict):
            return None
        if entry.get("serial") != format(cert.serial_number, "x"):
            return None
        if entry.get("sha256") != fingerprint_sha256(cert):
            return None
        return pos_id
