"""The operating system's trust anchors (what curl, Python, Java and most CLI clients trust).

Two layouts exist in the wild, each with its own drop-in directory and its own update command:

* Debian/Ubuntu: ``/usr/local/share/ca-certificates/*.crt`` (PEM, the ``.crt`` suffix is required),
  then ``update-ca-certificates``, which rebuilds ``/etc/ssl/certs/ca-certificates.crt``.
* Fedora/RHEL: ``/etc/pki/ca-trust/source/anchors/``, then ``update-ca-trust extract``, which rebuilds
  ``/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem``.

The root directory and the update command are injectable: Debian's ``update-ca-certificates`` takes
``--certsconf/--certsdir/--localcertsdir/--etccertsdir/--hooksdir``, so the tests run the real tool on
a fake root in a temporary directory and never touch the machine's own trust. Chrome and Firefox on
Linux do not read these anchors; they use NSS (``--store nss``).
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from lancert.errors import LancertError
from lancert.pki import load_certificates, pem
from lancert.pki.formats import der
from lancert.storage.files import StorageError, atomic_write
from lancert.trust.store import LABEL_PREFIX, TrustEntry, TrustStoreError, anchor_file_name

UPDATE_TIMEOUT = 120
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class SystemLayout:
    """Where one OS family keeps its drop-in anchors, its generated bundle, and how it rebuilds it."""

    name: str
    anchors_dir: str
    bundle: str
    update_command: tuple[str, ...]
    remove_command: tuple[str, ...]
    package_hint: str

    def command(self, root: Path, *, removing: bool) -> list[str]:
        base = list(self.remove_command if removing else self.update_command)
        if root == Path("/"):
            return base
        if self.name != "debian":
            raise TrustStoreError(
                f"{self.update_command[0]} cannot work on another root than /; pass an update command"
            )
        return [
            *base,
            "--certsconf", str(root / "etc/ca-certificates.conf"),
            "--certsdir", str(root / "usr/share/ca-certificates"),
            "--localcertsdir", str(root / self.anchors_dir),
            "--etccertsdir", str(root / "etc/ssl/certs"),
            "--hooksdir", str(root / "etc/ca-certificates/update.d"),
        ]


DEBIAN = SystemLayout(
    "debian", "usr/local/share/ca-certificates", "etc/ssl/certs/ca-certificates.crt",
    # Without --fresh a removed file's certificate stays in the bundle (the script only appends).
    ("update-ca-certificates",), ("update-ca-certificates", "--fresh"), "apt install ca-certificates",
)
FEDORA = SystemLayout(
    "fedora", "etc/pki/ca-trust/source/anchors", "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    ("update-ca-trust", "extract"), ("update-ca-trust", "extract"), "dnf install ca-certificates",
)
LAYOUTS = (DEBIAN, FEDORA)


def detect_layout(root: Path = Path("/")) -> SystemLayout:
    """Debian/Ubuntu or Fedora/RHEL, by the drop-in directory their ca-certificates package creates."""
    for layout in LAYOUTS:
        if (root / layout.anchors_dir).is_dir():
            return layout
    raise TrustStoreError(
        f"no known trust-anchor layout under {root} (looked for "
        + " and ".join(f"/{lay.anchors_dir}" for lay in LAYOUTS)
        + "); install your distribution's ca-certificates package"
    )


def bundle_der(data: bytes) -> list[bytes]:
    """The DER of every PEM block in a CA bundle, without parsing them (bundles hold oddities)."""
    ders = []
    for body in _PEM_BLOCK.findall(data):
        try:
            ders.append(base64.b64decode(b"".join(body.split()), validate=True))
        except ValueError:
            continue
    return ders


def bundle_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a CA bundle that cryptography can parse; the others are skipped."""
    certs = []
    with warnings.catch_warnings():
        # Some distributed roots have non-positive serials; cryptography warns but they still verify.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for der_bytes in bundle_der(data):
            try:
                cert = x509.load_der_x509_certificate(der_bytes)
                cert.extensions  # noqa: B018 - parse now, inside the filter
            except ValueError:
                continue
            certs.append(cert)
    return certs


@dataclass
class SystemStore:
    """The OS anchors under ``root`` (``/`` for real), rebuilt with ``update_command`` when given."""

    layout: SystemLayout
    root: Path = Path("/")
    update_command: Sequence[str] | None = None

    def __post_init__(self) -> None:
        # update-ca-certificates runs its hooks from another directory: a relative root would point
        # its --certsdir/--etccertsdir elsewhere and fail half-way.
        self.root = Path(self.root).absolute()

    @classmethod
    def detect(cls, root: Path = Path("/"), update_command: Sequence[str] | None = None) -> SystemStore:
        return cls(detect_layout(root), root, update_command)

    @property
    def description(self) -> str:
        where = "" if self.root == Path("/") else f" under {self.root}"
        return f"system trust ({self.layout.name}: /{self.layout.anchors_dir}){where}"

    @property
    def anchors_dir(self) -> Path:
        return self.root / self.layout.anchors_dir

    @property
    def bundle_path(self) -> Path:
        return self.root / self.layout.bundle

    def _update(self, *, removing: bool) -> None:
        cmd = (list(self.update_command) if self.update_command
               else self.layout.command(self.root, removing=removing))
        if shutil.which(cmd[0]) is None:
            raise TrustStoreError(f"{cmd[0]} not found: {self.layout.package_hint}")
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=UPDATE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise TrustStoreError(f"{cmd[0]} did not finish within {UPDATE_TIMEOUT} s") from None
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            hint = "; run with sudo" if "ermission" in " ".join(err) else ""
            raise TrustStoreError(f"{cmd[0]} failed: {err[-1] if err else proc.returncode}{hint}")

    def _bundle_version(self) -> tuple[int, int, int] | None:
        try:
            st = self.bundle_path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _rebuild_without(self, cert: x509.Certificate) -> None:
        """Rebuild the bundle once ``cert``'s anchor file is gone.

        update-ca-certificates writes the bundle only when at least one certificate goes into it (a
        guard for Debian bug #996005): with an empty ``ca-certificates.conf``, which the layout allows,
        removing the last anchor left the old bundle in place, ``cert`` still trusted. When the tool
        left the bundle untouched, ``cert``'s blocks are taken out of it here, everything else kept."""
        before = self._bundle_version()
        self._update(removing=True)
        if self.layout is not DEBIAN or before is None or self._bundle_version() != before:
            return
        data = self.bundle_path.read_bytes()
        unwanted = der(cert)
        kept = [block.group(0) + b"\n" for block in _PEM_BLOCK.finditer(data)
                if bundle_der(block.group(0)) != [unwanted]]
        if len(kept) != len(_PEM_BLOCK.findall(data)):
            try:
                atomic_write(self.bundle_path, b"".join(kept))  # 0644, as the tool makes it
            except StorageError as exc:
                raise TrustStoreError(f"{exc}; changing system anchors needs root: run with sudo") from None

    def _installed_files(self, cert: x509.Certificate) -> list[Path]:
        found = []
        for path in sorted(self.anchors_dir.glob(f"{LABEL_PREFIX}-*.crt")):
            try:
                if cert in load_certificates(path.read_bytes()):
                    found.append(path)
            except (OSError, LancertError):
                continue
        return found

    def check(self, cert: x509.Certificate) -> bool:
        try:
            data = self.bundle_path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise TrustStoreError(f"{self.bundle_path}: cannot read ({exc.strerror})") from None
        return der(cert) in bundle_der(data)

    def install(self, cert: x509.Certificate) -> None:
        """Add the anchor and rebuild the bundle; if that fails, take the anchor out again, so a failed
        install leaves the store as it was (a stray anchor would enter the bundle at the next update)."""
        added = None
        if not self._installed_files(cert):
            added = self.anchors_dir / anchor_file_name(cert)
            try:
                atomic_write(added, pem(cert))
            except StorageError as exc:
                raise TrustStoreError(f"{exc}; adding system anchors needs root: run with sudo") from None
        try:
            self._update(removing=False)
            if not self.check(cert):
                raise TrustStoreError(
                    f"{self.description}: the certificate is not in {self.bundle_path} after the update"
                )
        except TrustStoreError:
            if added is not None:
                with contextlib.suppress(OSError):
                    added.unlink()
                with contextlib.suppress(TrustStoreError):
                    self._rebuild_without(cert)  # drop what a half-run update left of it
            raise

    def uninstall(self, cert: x509.Certificate) -> bool:
        files = self._installed_files(cert)
        for path in files:
            try:
                path.unlink()
            except OSError as exc:
                raise TrustStoreError(f"{path}: cannot remove ({exc.strerror}); run with sudo") from None
        if files or self.check(cert):
            self._rebuild_without(cert)
        if self.check(cert):
            raise TrustStoreError(
                f"{self.description}: the certificate is still in {self.bundle_path}; it may come from "
                "another file than lancert's"
            )
        return bool(files)

    def list(self) -> list[TrustEntry]:
        result = []
        for path in sorted(self.anchors_dir.glob(f"{LABEL_PREFIX}-*.crt")):
            try:
                cert = load_certificates(path.read_bytes())[0]
            except (OSError, LancertError):
                result.append(TrustEntry(self.description, path.name, "unreadable"))
                continue
            state = "anchor" if self.check(cert) else "not in the bundle (update not run)"
            result.append(TrustEntry(self.description, path.name, state, cert))
        return result
