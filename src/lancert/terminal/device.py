"""The terminal's own PKI and pairing decision: its CA, its server certificate, the bundles it issues.

The terminal is its own small CA (root + intermediate in ``<state>/ca``, via :class:`lancert.ca.CADirectory`)
because a payment terminal in a shop has no provider to ask: POS systems trust its root, which they fetch
once before pairing, and the terminal trusts only client certificates its intermediate issued.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from lancert.ca.directory import CADirectory
from lancert.errors import LancertError
from lancert.pki import (
    TLS_CLIENT,
    TLS_SERVER,
    CertificateAuthority,
    KeyKind,
    SubjectNames,
    certificate_names,
    generate_private_key,
    pem,
    private_key_pem,
    served_chain,
    utcnow,
)
from lancert.storage.files import Credential, CredentialFiles, read_json, write_json
from lancert.terminal.codes import LOCAL_SOURCE, CodeView, SetupCodes
from lancert.terminal.keypool import RsaKeyPool
from lancert.terminal.registry import PosRegistry
from lancert.wire.pairing import check_pos_id, pos_uri

log = logging.getLogger("lancert.terminal")

TERMINAL_FILE = "terminal.json"
SERVER_CERT, SERVER_KEY = "server.pem", "server-key.pem"
DEFAULT_NAME = "lancert-terminal"
SERVER_VALIDITY = timedelta(days=397)
CLIENT_VALIDITY = timedelta(days=1825)
# A server certificate this close to its end is replaced at the next start.
RENEW_BEFORE = timedelta(days=30)


class NotActivated(LancertError):
    """The terminal has not been activated, so it has no CA and cannot pair."""


class CodeRefused(LancertError):
    """Wrong, expired or used setup code: one answer for all, so a guesser learns nothing."""


@dataclass(frozen=True)
class PairingResult:
    pos_id: str
    bundle: bytes
    certificate: x509.Certificate


class TerminalState:
    """Files of a terminal in its state directory, and the decisions made from them."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.ca_dir = CADirectory(self.state_dir / "ca")
        self.server_files = CredentialFiles(self.state_dir, SERVER_CERT, SERVER_KEY)
        self.registry = PosRegistry(self.state_dir)

    @property
    def info(self) -> dict[str, object]:
        data = read_json(self.state_dir / TERMINAL_FILE, default={})
        return data if isinstance(data, dict) else {}

    def is_activated(self) -> bool:
        return bool(self.info.get("activated")) and self.ca_dir.root_path.exists()

    def activate(self, *, name: str = DEFAULT_NAME) -> CertificateAuthority:
        """Make the terminal's CA once (kept across restarts) and mark the terminal activated."""
        SubjectNames.parse(dns=[name])  # a name the server certificate could not carry fails before the CA
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = self.ca_dir.load_or_create(f"lancert terminal {name}")
        if not self.info.get("activated"):
            write_json(self.state_dir / TERMINAL_FILE, {
                "activated": True, "activated_at": utcnow().isoformat(timespec="seconds"), "name": name,
            })
        return ca

    def authority(self) -> CertificateAuthority:
        if not self.is_activated():
            raise NotActivated(f"{self.state_dir}: terminal not activated; run: lancert terminal activate "
                               f"--state-dir {self.state_dir}")
        return self.ca_dir.load()

    def root_pem(self) -> bytes:
        return pem(self.authority().root)

    def server_credential(self, hosts: list[str], name: str) -> Credential:
        """The server certificate for ``hosts`` and ``name``; made or renewed when needed."""
        ca = self.authority()
        ips = [h for h in hosts if _is_ip(h)]
        dns = [name, "localhost", *(h for h in hosts if not _is_ip(h))]
        wanted = SubjectNames.parse(dns=dns, ips=[*ips, "127.0.0.1", "::1"])
        self.server_files.recover()
        if self.server_files.exists():
            try:
                current = self.server_files.read()
            except LancertError:
                current = None
            if current is not None and _still_good(current, wanted, ca):
                return current
        key = generate_private_key(KeyKind.EC)
        cert = ca.issue(key.public_key(), TLS_SERVER, names=wanted, common_name=name,
                        validity=SERVER_VALIDITY)
        credential = Credential(served_chain(cert, ca.chain), key)
        self.server_files.write(credential)
        return credential


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _still_good(current: Credential, wanted: SubjectNames, ca: CertificateAuthority) -> bool:
    cert = current.certificate
    have = certificate_names(cert)
    return (
        set(have.dns) == set(wanted.dns) and set(have.ips) == set(wanted.ips)
        and cert.issuer == ca.certificate.subject
        and cert.not_valid_after_utc - utcnow() > RENEW_BEFORE
        and len(current.chain) > 1 and current.chain[1] == ca.certificate
    )


class PairingDesk:
    """Pairing on a running terminal: the setup code, the key pool, and issuing bundles.

    The code is consumed under a lock before anything is issued, so two POS racing with the same code
    get exactly one bundle between them.
    """

    def __init__(
        self,
        state: TerminalState,
        *,
        codes: SetupCodes | None = None,
        key_pool: RsaKeyPool | None = None,
        on_paired: Callable[[str], None] | None = None,
        on_guessing: Callable[[str], None] | None = None,
    ) -> None:
        self.state = state
        self.codes = codes or SetupCodes()
        self.key_pool = key_pool or RsaKeyPool(0)
        self.ca = state.authority()
        self._on_paired = on_paired
        self._on_guessing = on_guessing
        self._issue_lock = threading.Lock()

    def generate_code(self) -> CodeView:
        return self.codes.generate()

    def pair(self, pos_id: str, setup_code: str, source: str = LOCAL_SOURCE) -> PairingResult:
        """Consume ``setup_code`` and issue ``pos_id`` a key and certificate; the old one stops working.

        ``source`` is the client's address: wrong codes are counted per address (see
        :mod:`lancert.terminal.codes`), and the screen is told when an address gets blocked.
        """
        check_pos_id(pos_id)
        blocked_before = self.codes.blocked(source)
        if not self.codes.consume(setup_code, source):
            if not blocked_before and self.codes.blocked(source):
                log.warning("too many wrong setup codes from %s: refused until the next code", source)
                if self._on_guessing is not None:
                    self._on_guessing(source)
            raise CodeRefused("invalid, expired or already used setup code")
        key = self.key_pool.take()
        cert = self.ca.issue(
            key.public_key(), TLS_CLIENT, names=SubjectNames.parse(uris=[pos_uri(pos_id)]),
            common_name=pos_id, validity=CLIENT_VALIDITY,
        )
        with self._issue_lock:
            self.state.registry.record(pos_id, cert)
        # The seed's order: PKCS#1 RSA key, then client, intermediate and root certificates.
        bundle = private_key_pem(key, pkcs1=True) + pem([*served_chain(cert, self.ca.chain), self.ca.root])
        log.info("paired posId %s (certificate serial %x)", pos_id, cert.serial_number)
        if self._on_paired is not None:
            self._on_paired(pos_id)
        return PairingResult(pos_id, bundle, cert)
