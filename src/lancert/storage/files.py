"""The one module that writes keys and certificates to disk.

Every write is atomic: a temporary file in the same directory, created with its final mode (0600 for
keys, so a key is never readable by others even for an instant), fsync'd, renamed over the target, and
the directory fsync'd. A crash or power cut leaves the old file or the new one, never half of either.

A key and its certificate are two files, and two renames are not one atomic step, so
:class:`CredentialFiles` stages both as ``*.new`` and :meth:`CredentialFiles.recover` finishes or discards
an interrupted swap at the next start: the pair on disk always belongs together.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from lancert.errors import LancertError
from lancert.pki.formats import load_certificates, pem
from lancert.pki.keys import PrivateKey, load_private_key_pem, private_key_pem, public_key_matches

KEY_MODE = 0o600
PUBLIC_MODE = 0o644


class StorageError(LancertError):
    """A file that cannot be written or read back."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file has ``mode`` from its creation."""
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StorageError(f"{directory}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StorageError(f"{path}: cannot write ({exc.strerror})") from None
        raise


def check_output_file(path: Path, *, force: bool = False) -> None:
    """Refuse an output path a user most likely mistyped (or a file they may want to keep).

    The parent must already exist: :func:`atomic_write` creates missing parents for state directories,
    and a typo in ``-o`` would otherwise make directories anywhere (``/nonexistent/dir``). An existing
    file is kept unless ``force``, as ``device create`` keeps a device's certificate.
    """
    parent = path.parent
    if not parent.is_dir():
        raise StorageError(f"{parent}: no such directory (create it first, or choose another -o)")
    if path.is_dir():
        raise StorageError(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise StorageError(f"{path} already exists; use --force to replace it")


def write_private_key(path: Path | str, key: PrivateKey, *, pkcs1: bool = False) -> None:
    atomic_write(path, private_key_pem(key, pkcs1=pkcs1), mode=KEY_MODE)


def write_certificates(path: Path | str, certs: Sequence[x509.Certificate]) -> None:
    atomic_write(path, pem(list(certs)), mode=PUBLIC_MODE)


def read_json(path: Path | str, default: Any = None) -> Any:
    """A JSON document, or ``default`` when the file does not exist or is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def write_json(path: Path | str, value: Any, *, mode: int = PUBLIC_MODE) -> None:
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode(), mode=mode)


@dataclass(frozen=True)
class Credential:
    """A certificate chain (leaf first) and the private key of its leaf."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


class CredentialFiles:
    """``cert.pem`` and ``key.pem`` in a state directory, swapped as a pair (see module docstring)."""

    def __init__(self, directory: Path | str, cert_name: str = "cert.pem", key_name: str = "key.pem") -> None:
        self.directory = Path(directory)
        self.cert_path = self.directory / cert_name
        self.key_path = self.directory / key_name
        self._cert_next = self.directory / (cert_name + ".new")
        self._key_next = self.directory / (key_name + ".new")

    def exists(self) -> bool:
        return self.cert_path.exists() or self.key_path.exists()

    def write(self, credential: Credential, *, checkpoint: Callable[[str], None] | None = None) -> None:
        """Install a new pair; at every instant the pair on disk (after :meth:`recover`) matches.

        ``checkpoint`` is called with ``key_staged``, ``cert_staged`` and ``between_renames``: crash tests
        kill the process there to prove that :meth:`recover` leaves a working pair from each point.
        """
        mark = checkpoint or (lambda _point: None)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only mount
            raise StorageError(f"{self.directory}: cannot create directory ({exc.strerror})") from None
        write_private_key(self._key_next, credential.key)
        mark("key_staged")
        write_certificates(self._cert_next, credential.chain)
        mark("cert_staged")
        self._commit(mark)

    def _commit(self, mark: Callable[[str], None] = lambda _point: None) -> None:
        os.replace(self._key_next, self.key_path)
        mark("between_renames")
        os.replace(self._cert_next, self.cert_path)
        _fsync_dir(self.directory)

    def recover(self) -> None:
        """Finish a swap that was interrupted after staging, or drop a half-staged one."""
        if not self.directory.is_dir():  # nothing was ever staged here (or a file is in the way)
            return
        key_next, cert_next = self._key_next.exists(), self._cert_next.exists()
        if key_next and cert_next and self._pair_matches(self._cert_next, self._key_next):
            self._commit()
        elif cert_next and not key_next and self._pair_matches(self._cert_next, self.key_path):
            # Crashed between the two renames: the new key is in place, its certificate still staged.
            os.replace(self._cert_next, self.cert_path)
            _fsync_dir(self.directory)
        for stale in (self._key_next, self._cert_next):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        # Only this pair's temporary files: another writer's (state.json's) may be in flight right now.
        for prefix in (self.cert_path.name, self.key_path.name):
            for tmp in self.directory.glob(f".{glob.escape(prefix)}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    @staticmethod
    def _pair_matches(cert_path: Path, key_path: Path) -> bool:
        try:
            certs = load_certificates(cert_path.read_bytes())
            key = load_private_key_pem(key_path.read_bytes())
        except (OSError, LancertError):
            return False
        return public_key_matches(key, certs[0].public_key())

    def read(self) -> Credential:
        """The stored pair; :class:`StorageError` names the file when it is missing or unreadable."""
        try:
            chain = tuple(load_certificates(self.cert_path.read_bytes()))
        except FileNotFoundError:
            raise StorageError(f"{self.cert_path}: no certificate stored") from None
        except (OSError, LancertError) as exc:
            raise StorageError(f"{self.cert_path}: unreadable certificate ({exc})") from None
        try:
            key = load_private_key_pem(self.key_path.read_bytes())
        except FileNotFoundError:
            raise StorageError(f"{self.key_path}: no private key stored") from None
        except (OSError, LancertError):
            raise StorageError(f"{self.key_path}: unreadable private key") from None
        if not public_key_matches(key, chain[0].public_key()):
            raise StorageError(f"{self.cert_path} does not belong to {self.key_path}")
        return Credential(chain, key)
