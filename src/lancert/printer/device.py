"""The simulated ePOS printer itself: its serial number, its certificates, and the receipts it prints.

What a real Epson TM printer's firmware does behind its web configuration, without any HTTP: sign-in
with ID ``epson`` and the serial number as password; a self-signed certificate made once (the very code
of ``lancert device create``, so the generate-once guard and its warning are the same); a CSR whose key
stays on the printer, and the import of a CA-signed certificate (PEM, or PKCS#12 with its key). As on the
real printers the certificate list holds both kinds; Security → SSL/TLS chooses the server certificate,
and a reset applies it. :mod:`lancert.printer.web` is a thin page over this.

Files in the printer's directory: ``cert.pem``/``key.pem`` (the server certificate, what ``device create``
writes and the printer serves, swapped as a pair by :class:`~lancert.storage.CredentialFiles`),
``certificates/self-signed/`` and ``certificates/ca-signed/`` (the certificate list), ``printer.json``
(0600: the serial number, i.e. the admin password), ``pending/key.pem`` + ``pending/request.csr`` (a CSR
waiting for its certificate), ``receipts/NNNNNN.json`` (every printed job: text, cuts, barcodes, in order).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lancert.device.certificate import create_device_certificate
from lancert.errors import LancertError
from lancert.pki import (
    InvalidName,
    PKIError,
    SubjectNames,
    create_csr,
    generate_private_key,
    is_self_issued,
    load_certificates,
    load_pkcs12,
    load_private_key_pem,
    parse_ip,
    public_key_matches,
    utcnow,
)
from lancert.printer.epos import (
    ASB_IDLE,
    ASB_PRINT_SUCCESS,
    DEVICE_NOT_FOUND,
    SCHEMA_ERROR,
    Response,
    SchemaError,
)
from lancert.printer.epos import parse_print_request as parse_epos
from lancert.storage.files import (
    KEY_MODE,
    Credential,
    CredentialFiles,
    StorageError,
    atomic_write,
    read_json,
    write_json,
    write_private_key,
)

log = logging.getLogger("lancert.printer")
ADMIN_ID = "epson"
DEFAULT_DEVICE_ID = "local_printer"
# The ePOS SDK's timeout parameter, in milliseconds (its default is 10000, 60000 is a common choice).
MAX_TIMEOUT_MS = 300_000
SERIAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
# After this many wrong passwords in a row from one address, that address's sign-ins are refused unchecked
# for SIGN_IN_LOCKOUT seconds: guessing a 9-character serial online is hopeless anyway, this keeps a script
# from hammering it. Per address, not global: 5 wrong guesses from anyone locked the owner out (one every
# 6 s kept them out). At most SIGN_IN_SOURCES addresses are remembered (the oldest forgotten first).
SIGN_IN_ATTEMPTS = 5
SIGN_IN_LOCKOUT = 30.0
SIGN_IN_SOURCES = 1024
# What the simulator keeps of printed jobs: the newest KEPT_RECEIPTS, at most KEPT_RECEIPT_BYTES in all
# (older ones are deleted as new ones come). Before, every job was kept, its text twice: 200 prints of
# 1 MiB wrote 419 MB in 5 s, and the admin page parsed every receipt at each load.
KEPT_RECEIPTS = 200
KEPT_RECEIPT_BYTES = 16 * 1024 * 1024
_RECEIPT = re.compile(r"^(\d{6})\.json$")
SELF_SIGNED, CA_SIGNED = "self-signed", "ca-signed"
CERTIFICATE_LIST = (SELF_SIGNED, CA_SIGNED)


class PrinterError(LancertError):
    """An admin action the printer refuses; the message is shown on its web page."""


class Printer:
    """One simulated ePOS printer in ``directory`` at address ``ip``."""

    def __init__(
        self, directory: Path, *, ip: str, device_ids: tuple[str, ...] = (DEFAULT_DEVICE_ID,)
    ) -> None:
        self.directory = Path(directory)
        self.ip = str(parse_ip(ip))
        self.device_ids = frozenset(device_ids)
        self.credentials = CredentialFiles(self.directory)
        self.credentials.recover()
        for name in CERTIFICATE_LIST:
            self.listed(name).recover()
        self._list_server_certificate()
        self._receipt_lock = threading.Lock()
        # The shop's trust page (``lancert trust serve``), shown with its QR code on the admin page.
        self.trust_page: str | None = None
        # address -> (wrong passwords in a row, locked until)
        self._sign_ins: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._sign_in_lock = threading.Lock()
        self.serial = self._serial()
        # What the running server serves: set at start and at each reset, so pages can say what a reset
        # would change.
        self.served: x509.Certificate | None = None

    # ---- identity ------------------------------------------------------------------------------
    def _serial(self) -> str:
        """Made once, like the serial number on the printer's label (the admin password)."""
        path = self.directory / "printer.json"
        state = read_json(path, {}) or {}
        serial = state.get("serial")
        if not isinstance(serial, str) or not serial:
            serial = "X" + "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(9))
            write_json(path, {"serial": serial}, mode=KEY_MODE)
        return serial

    def check_sign_in(self, user: str, password: str, source: str = "local") -> bool:
        """ID ``epson`` and the serial number, compared in constant time; refused during ``source``'s
        lockout (see :data:`SIGN_IN_ATTEMPTS`)."""
        now = time.monotonic()
        with self._sign_in_lock:
            wrong, locked_until = self._sign_ins.get(source, (0, 0.0))
            if now < locked_until:
                return False
        user_ok = hmac.compare_digest(user.encode(), ADMIN_ID.encode())
        password_ok = hmac.compare_digest(password.encode(), self.serial.encode())
        with self._sign_in_lock:
            if user_ok and password_ok:
                self._sign_ins.pop(source, None)
                return True
            wrong += 1
            self._sign_ins[source] = (0, now + SIGN_IN_LOCKOUT) if wrong >= SIGN_IN_ATTEMPTS else (wrong, 0.0)
            self._sign_ins.move_to_end(source)
            while len(self._sign_ins) > SIGN_IN_SOURCES:
                self._sign_ins.popitem(last=False)
        return False

    # ---- printing ------------------------------------------------------------------------------
    @property
    def receipts_dir(self) -> Path:
        return self.directory / "receipts"

    def print_job(self, device_id: str | None, timeout: str | None, document: bytes,
                  source: str = "local") -> Response:
        """The answer to one ePOS-Print request; a printed receipt is stored before success is answered."""
        # isascii: str.isdigit() also accepts "²" and other digits int() refuses.
        if timeout is not None and not (timeout.isascii() and timeout.isdigit()
                                        and int(timeout) <= MAX_TIMEOUT_MS):
            return Response(False, SCHEMA_ERROR)
        if device_id not in self.device_ids:
            return Response(False, DEVICE_NOT_FOUND)
        try:
            receipt = parse_epos(document)
        except SchemaError:
            return Response(False, SCHEMA_ERROR)
        if not receipt.items:
            # The ePOS SDK's connection probe (ePOSDevice.connect, probeWebServiceIF): an epos-print with
            # no command. A printer answers its status and prints nothing; Odoo 14 sends two per connect.
            return Response(True, "", ASB_IDLE)
        record = {**receipt.as_dict(), "device_id": device_id, "printed_at": utcnow().isoformat()}
        with self._receipt_lock:
            paths = self._receipt_paths()
            number = int(paths[-1].name[:6]) + 1 if paths else 1
            path = self.receipts_dir / f"{number:06d}.json"
            write_json(path, record)
            self._forget_old_receipts([*paths, path])
        log.info("printed job %06d for %s: %d characters, %d cuts, %d barcodes", number, source,
                 len(receipt.text), len(record["cuts"]), len(record["barcodes"]))  # type: ignore[arg-type]
        return Response(True, "", ASB_PRINT_SUCCESS)

    def _receipt_paths(self) -> list[Path]:
        return sorted(p for p in self.receipts_dir.glob("*.json") if _RECEIPT.match(p.name))

    def _forget_old_receipts(self, paths: list[Path]) -> None:
        """Keep the newest :data:`KEPT_RECEIPTS` within :data:`KEPT_RECEIPT_BYTES` (the newest always)."""
        sizes = [p.stat().st_size for p in paths]
        keep, total = 0, 0
        for size in reversed(sizes):
            if keep >= KEPT_RECEIPTS or (keep and total + size > KEPT_RECEIPT_BYTES):
                break
            keep, total = keep + 1, total + size
        for old in paths[:len(paths) - keep]:
            old.unlink(missing_ok=True)

    def receipts(self, last: int | None = None) -> list[dict[str, object]]:
        """The printed receipts kept, oldest first (only the ``last`` ones when given)."""
        paths = self._receipt_paths()
        return [read_json(p, {}) for p in (paths[-last:] if last else paths)]

    # ---- certificates --------------------------------------------------------------------------
    def stored_certificate(self) -> x509.Certificate | None:
        """The certificate on disk (served from the next reset), or ``None`` (fresh from the box)."""
        try:
            return self.credentials.read().certificate
        except StorageError:
            return None

    def tls_context(self) -> ssl.SSLContext | None:
        """A server context for the stored chain, or ``None``: then the printer speaks HTTP only."""
        if self.stored_certificate() is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.credentials.cert_path, self.credentials.key_path)
        return context

    def listed(self, name: str) -> CredentialFiles:
        """One entry of the certificate list (``self-signed`` or ``ca-signed``)."""
        if name not in CERTIFICATE_LIST:
            raise PrinterError(f"no certificate {name!r} (choose {' or '.join(CERTIFICATE_LIST)})")
        return CredentialFiles(self.directory / "certificates" / name)

    def certificate_list(self) -> dict[str, x509.Certificate | None]:
        listed = {}
        for name in CERTIFICATE_LIST:
            try:
                listed[name] = self.listed(name).read().certificate
            except StorageError:
                listed[name] = None
        return listed

    def _list_server_certificate(self) -> None:
        """A server certificate made outside the page (``device create``) joins the list under its kind."""
        try:
            server = self.credentials.read()
        except StorageError:
            return
        entry = self.listed(SELF_SIGNED if is_self_issued(server.certificate) else CA_SIGNED)
        if not entry.exists():
            entry.write(server)

    def create_self_signed(self, common_name: str, years: int, *, force: bool = False) -> Credential:
        """Authentication → Certificate List → create: the same call (and refusal) as ``device create``."""
        directory = self.listed(SELF_SIGNED).directory
        return create_device_certificate(directory, ip=common_name.strip(), years=years, force=force)

    def choose_server_certificate(self, name: str) -> x509.Certificate:
        """Security → SSL/TLS → server certificate: becomes ``cert.pem``/``key.pem``, served after a reset."""
        try:
            credential = self.listed(name).read()
        except StorageError:
            raise PrinterError(f"the certificate list has no {name} certificate yet") from None
        self.credentials.write(credential)
        return credential.certificate

    @property
    def _pending(self) -> CredentialFiles:
        return CredentialFiles(self.directory / "pending", cert_name="request.csr")

    def make_csr(self, common_name: str) -> bytes:
        """A new key kept on the printer (``pending/key.pem``) and its CSR (PEM) for the shop's CA.

        The CN is the printer's address, repeated in subjectAltName (browsers read only the SAN).
        """
        try:
            names = SubjectNames.parse(ips=[common_name.strip()])
        except InvalidName as exc:
            raise PrinterError(f"Common Name: {exc}") from None
        key = generate_private_key()
        csr = create_csr(key, names, common_name=str(names.ips[0]))
        data = csr.public_bytes(serialization.Encoding.PEM)
        write_private_key(self._pending.key_path, key)
        atomic_write(self._pending.cert_path, data)
        return data

    def pending_csr(self) -> bytes | None:
        try:
            return self._pending.cert_path.read_bytes()
        except FileNotFoundError:
            return None

    def import_pem(self, data: bytes) -> x509.Certificate:
        """Import a CA-signed chain (leaf first) for the pending CSR's key, or with its own PEM key."""
        try:
            chain = load_certificates(data)
        except (LancertError, ValueError):
            raise PrinterError("not a PEM certificate") from None
        key = None
        if b"PRIVATE KEY-----" in data:
            try:
                key = load_private_key_pem(data)
            except LancertError:
                raise PrinterError("the private key in the file cannot be read") from None
        elif self._pending.key_path.exists():
            key = load_private_key_pem(self._pending.key_path.read_bytes())
        if key is None:
            raise PrinterError("no private key: make a CSR on this printer first, or include the key")
        return self._install(chain, key)

    def import_pkcs12(self, data: bytes, password: str) -> x509.Certificate:
        try:
            chain, key = load_pkcs12(data, password)
        except PKIError as exc:
            raise PrinterError(str(exc)) from None
        return self._install(chain, key)

    def _install(self, chain: list[x509.Certificate], key: object) -> x509.Certificate:
        leaf = chain[0]
        if not public_key_matches(key, leaf.public_key()):  # type: ignore[arg-type]
            raise PrinterError("the certificate does not belong to this printer's key (the pending CSR's)")
        if utcnow() > leaf.not_valid_after_utc:
            raise PrinterError("the certificate has expired")
        self.listed(CA_SIGNED).write(Credential(tuple(chain), key))  # type: ignore[arg-type]
        for stale in (self._pending.key_path, self._pending.cert_path):
            stale.unlink(missing_ok=True)
        return leaf
