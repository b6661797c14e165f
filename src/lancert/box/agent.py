"""The box's certificate keeper: checks, obtains, stores and hands over the certificate it serves.

A check runs at start, on every homepage load and on a timer. It obtains a new certificate through the
native API (its own key, a CSR: the key never leaves the box) when there is none, when the stored one is
unreadable or expired, or when the service's renewal time has come. A box that holds a valid certificate
keeps serving it whatever goes wrong with a renewal; the failure is recorded next to an "OK" status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from lancert.box.codes import BoxFailure, BoxProblem, ErrorCode
from lancert.box.files import BoxSettings, BoxState, InvalidServiceURL, check_service_url
from lancert.box.names import https_url
from lancert.dns.names import device_hostname
from lancert.errors import LancertError
from lancert.pki import (
    PKIError,
    PrivateKey,
    SubjectNames,
    certificate_names,
    create_csr,
    fingerprint_sha256,
    generate_private_key,
    load_certificates,
    load_private_key_pem,
    utcnow,
)
from lancert.pki.keys import public_key_matches
from lancert.pki.names import normalize_dns_name
from lancert.storage.files import Credential, CredentialFiles, StorageError, write_private_key

log = logging.getLogger("lancert.box")

CERTIFICATES_PATH = "/api/v1/certificates"
PENDING_KEY = "request-key.pem"  # the key of a request whose certificate has not come yet (0600)
MAX_RESPONSE_BYTES = 1024 * 1024
# Renew at 2/3 of the lifetime when the service did not say (a certificate recovered after a crash).
RENEW_FRACTION = 2 / 3
MAX_EVENTS = 20
# A homepage load retries a failed request at most this often: any page, even another site's <img>, can
# make a browser load it, and each request makes a new key and costs the service a signature check.
MIN_REQUEST_INTERVAL = 10.0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _wildcard_parts(cert: x509.Certificate) -> tuple[str, str] | None:
    """``(box_label, zone)`` from the certificate's ``*.<box-label>.<zone>`` name, if it has one."""
    for name in certificate_names(cert).dns:
        if name.startswith("*.") and name.count(".") >= 3:
            label, _, zone = name[2:].partition(".")
            return label, zone
    return None


def _fail(code: ErrorCode, detail: str, status: int | None = None) -> BoxFailure:
    return BoxFailure(BoxProblem(code, detail, status))


def _no_checkpoint(_point: str) -> None:
    """A renewal's steps go by unobserved, except in crash tests (see :class:`CertificateKeeper`)."""


class CertificateKeeper:
    """Owns ``cert.pem``/``key.pem``/``state.json`` of one state directory while the box runs."""

    def __init__(
        self,
        state_dir: Path,
        *,
        lan_ip: str,
        on_certificate: Callable[[Credential], None] = lambda _c: None,
        request_timeout: float = 10.0,
        checkpoint: Callable[[str], None] = _no_checkpoint,
    ) -> None:
        """``checkpoint`` is called at each step of a renewal (``key_staged``, ``cert_staged``,
        ``between_renames``, ``before_state_saved``): crash tests kill the box there, through the test-only
        entry point tests/lancert_with_hooks.py, never through anything a deployed box reads."""
        self.state_dir = state_dir
        self.files = CredentialFiles(state_dir)
        self.lan_ip = lan_ip
        self.on_certificate = on_certificate
        self.request_timeout = request_timeout
        self.checkpoint = checkpoint
        self.state = BoxState.load(state_dir)
        self.credential: Credential | None = None
        self._lock = asyncio.Lock()
        self._last_request: float | None = None

    # -- state -----------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish or undo a certificate swap a crash interrupted; then remember who and where we are."""
        self.files.recover()
        self.state.lan_ip = self.lan_ip
        self.state.save(self.state_dir)

    def set_ports(self, http_port: int, https_port: int) -> None:
        self.state.http_port, self.state.https_port = http_port, https_port
        self._update_names()
        self.state.save(self.state_dir)

    def _update_names(self) -> None:
        if self.state.box_label and self.state.zone:
            self.state.hostname = device_hostname(self.lan_ip, self.state.box_label, self.state.zone)
            self.state.https_url = https_url(self.state.hostname, self.state.https_port)

    def _record_certificate(self, cert: x509.Certificate, renew_after: datetime | None) -> None:
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        self.state.fingerprint = fingerprint_sha256(cert)
        self.state.not_before, self.state.not_after = _iso(nb), _iso(na)
        self.state.renew_after = _iso(renew_after or nb + (na - nb) * RENEW_FRACTION)
        parts = _wildcard_parts(cert)
        if parts:
            self.state.box_label, self.state.zone = parts
        self._update_names()

    def _add_event(self, now: datetime, outcome: str, detail: str) -> None:
        """Keep the last few check outcomes: support reads them on the homepage and in the status."""
        self.state.events = [{"time": _iso(now), "outcome": outcome, "detail": detail},
                             *self.state.events][:MAX_EVENTS]

    # -- the check ---------------------------------------------------------------------------------------

    async def check(self, reason: str, *, rate_limited: bool = False) -> BoxState:
        """Run one check (serialised: concurrent homepage loads share the running one's outcome).

        ``rate_limited`` (a homepage load): no certificate request less than :data:`MIN_REQUEST_INTERVAL`
        seconds after the last one; the page then shows the outcome of that one.
        """
        may_request = not (rate_limited and self._last_request is not None
                           and time.monotonic() - self._last_request < MIN_REQUEST_INTERVAL)
        if self._lock.locked():
            async with self._lock:
                return self.state
        async with self._lock:
            try:
                await self._check(reason, may_request)
            except Exception as exc:  # a bug in one check must not take the homepage or the timer down
                log.error("check (%s) failed unexpectedly: %s: %s", reason, type(exc).__name__, exc)
            return self.state

    def _read_current(self, problems: list[BoxProblem]) -> Credential | None:
        if not self.files.exists():
            return None
        try:
            credential = self.files.read()
        except StorageError as exc:
            problems.append(BoxProblem(ErrorCode.CHECK_CERT_READ_EXCEPTION, str(exc)))
            return None
        if fingerprint_sha256(credential.certificate) != self.state.fingerprint:
            # state.json lags behind the files after a crash between the two writes: the certificate
            # itself holds everything the state needs.
            self._record_certificate(credential.certificate, None)
        return credential

    async def _check(self, reason: str, may_request: bool = True) -> None:
        now = utcnow()
        settings = BoxSettings.load(self.state_dir)
        logging.getLogger("lancert").setLevel(settings.log_level)
        problems: list[BoxProblem] = []
        current = self._read_current(problems)
        renew_after = parse_time(self.state.renew_after)
        due = (
            current is None
            or now >= current.certificate.not_valid_after_utc
            or renew_after is None
            or now >= renew_after
        )
        obtained = False
        if due and not may_request:
            log.debug("check (%s): the last certificate request was under %.0f s ago; not asking again yet",
                      reason, MIN_REQUEST_INTERVAL)
            return
        if due:
            why = ("no certificate" if current is None and not problems else
                   "unreadable certificate" if current is None else
                   "expired" if now >= current.certificate.not_valid_after_utc else "renewal time reached")
            log.info("check (%s): obtaining a certificate: %s", reason, why)
            try:
                current = await self._obtain(settings, now)
                obtained = True
            except BoxFailure as failure:
                problems.append(failure.problem)
        else:
            log.debug("check (%s): certificate valid until %s, renewal after %s",
                      reason, self.state.not_after, self.state.renew_after)
        # The clock after the request, not ``now`` from before it: a CA that does not backdate (Pebble)
        # issues a certificate valid from a second after the check began.
        checked = utcnow() if obtained else now
        valid = current is not None and current.certificate.not_valid_before_utc <= checked < (
            current.certificate.not_valid_after_utc)
        for problem in problems:
            if obtained:
                note = f"{problem.detail}; replaced with a new certificate"
                log.warning("%s: %s", problem.label, note)
            elif valid:
                note = (f"{problem.detail}; still serving the current certificate, "
                        f"valid until {self.state.not_after}")
                log.error("%s: %s", problem.label, note)
            else:
                note = problem.detail
                log.error("%s: %s", problem.label, note)
            self._add_event(now, problem.label, note)
        if obtained:
            problems = []
            self._add_event(now, "OK", f"new certificate, valid until {self.state.not_after}")
        if current is not None and (self.credential is None
                                    or current.certificate != self.credential.certificate):
            self.credential = current  # only a different certificate is handed to the TLS context
            self.on_certificate(current)
        self.state.serving = current is not None
        self.state.status = "OK" if valid else (problems[0].label if problems else "ERROR")
        self.state.problems = [p.as_dict() for p in problems]
        self.state.last_check = _iso(now)
        self.state.last_check_reason = reason
        self.state.save(self.state_dir)

    # -- obtaining a certificate through the native API -------------------------------------------------

    async def _obtain(self, settings: BoxSettings, now: datetime) -> Credential:
        if not settings.server_url.strip():
            raise _fail(ErrorCode.CHECK_NO_SERVER, "no certificate service URL is configured")
        try:
            server_url = check_service_url(settings.server_url.strip())
        except InvalidServiceURL as exc:
            # A hand-edited or old settings.json: the box keeps serving its page and says what to fix.
            raise _fail(ErrorCode.CHECK_NO_SERVER, f"the saved service URL is not usable: {exc}") from None
        if not settings.has_credential:
            missing = [n for n, v in (("database UUID", settings.db_uuid), ("enterprise code",
                       settings.enterprise_code)) if not v.strip()]
            raise BoxFailure(BoxProblem(ErrorCode.LOAD_NO_CREDENTIAL, f"missing: {' and '.join(missing)}"))
        key = self._request_key()
        names = (SubjectNames.parse(dns=[f"*.{self.state.box_label}.{self.state.zone}"])
                 if self.state.box_label and self.state.zone else SubjectNames())
        csr = create_csr(key, names)
        body = {
            "db_uuid": settings.db_uuid.strip(),
            "enterprise_code": settings.enterprise_code.strip(),
            "box_id": self.state.box_id,
            "csr": csr.public_bytes(Encoding.PEM).decode(),
        }
        url = server_url.rstrip("/") + CERTIFICATES_PATH
        self._last_request = time.monotonic()
        status, payload = await self._post(url, body)
        learned = _name_to_ask_for(status, payload)
        if learned is not None and not names.dns:
            # A service issuing through a public ACME CA needs the name in the CSR (the CA checks it
            # against its order); the first request of a new box cannot know it, the refusal says it.
            self.state.box_label, self.state.zone = learned
            csr = create_csr(key, SubjectNames.parse(dns=[f"*.{learned[0]}.{learned[1]}"]))
            body["csr"] = csr.public_bytes(Encoding.PEM).decode()
            status, payload = await self._post(url, body)
        if status == 403 and _error_code(payload) == "not_eligible":
            reason = payload.get("error", {}).get("reason", "not eligible")  # type: ignore[union-attr]
            raise BoxFailure(BoxProblem(ErrorCode.LOAD_REQUEST_NO_RESULT, f"the service refused: {reason}"))
        if status != 200:
            message = _error_message(payload)
            raise BoxFailure(BoxProblem(ErrorCode.LOAD_REQUEST_STATUS, f"{url} answered HTTP {status}"
                                        + (f": {message}" if message else ""), status))
        credential, renew_after = self._accept(payload, key, now)
        self.files.write(credential, checkpoint=self.checkpoint)
        (self.state_dir / PENDING_KEY).unlink(missing_ok=True)
        self.checkpoint("before_state_saved")
        self._record_certificate(credential.certificate, renew_after)
        self.state.last_renewal = _iso(now)
        log.info("new certificate for %s, valid %s to %s, renewal after %s", self.state.hostname,
                 self.state.not_before, self.state.not_after, self.state.renew_after)
        return credential

    def _request_key(self) -> PrivateKey:
        """The key of the last request still without its certificate, else a new one kept until a
        certificate for it arrives: a service still ordering (an upstream CA slower than the box's wait)
        finishes the order for that key, and the next request with the same key gets its certificate;
        with a new key each time, every retry would be a new order at the CA, whose duplicate limit
        (Let's Encrypt: 5 per name set per week) a box retrying every few minutes spends in an hour."""
        path = self.state_dir / PENDING_KEY
        try:
            return load_private_key_pem(path.read_bytes())
        except (OSError, ValueError, PKIError):
            key = generate_private_key()
            write_private_key(path, key)  # 0600, atomic
            return key

    async def _post(self, url: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST ``body``; the status and the JSON object answered (empty when it is not one).

        httpx (8 MiB resident) is imported here, not with the module: a box that holds a valid
        certificate talks to the service only at its renewals, and serves its pages without it."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.request_timeout, trust_env=False) as client, \
                    client.stream("POST", url, json=body) as response:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise _fail(ErrorCode.LOAD_REQUEST_EXCEPTION,
                                    f"{url}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        except (httpx.HTTPError, httpx.InvalidURL, OverflowError, ValueError, OSError) as exc:
            # InvalidURL is no HTTPError, and the socket layer raises OverflowError/ValueError for
            # addresses the URL parsers let through: all mean "cannot reach the service".
            raise BoxFailure(BoxProblem(ErrorCode.LOAD_REQUEST_EXCEPTION,
                                        f"{url}: {type(exc).__name__}: {exc or 'no detail'}")) from None
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}

    def _accept(self, payload: dict[str, Any], key: Any, now: datetime) -> tuple[Credential, datetime | None]:
        """Check the service's answer before anything is written: chain, key, names, validity.

        The wire schema (pydantic, 9 MiB resident with its core) is imported here, when an answer
        came: a box between renewals does not need it."""
        from pydantic import ValidationError

        from lancert.wire.provisioning import CertificateResponse

        def refuse(why: str) -> BoxFailure:
            return _fail(ErrorCode.LOAD_REQUEST_NO_RESULT, f"unusable answer from the service: {why}")

        try:
            answer = CertificateResponse.model_validate(payload)
        except ValidationError as exc:
            raise refuse(f"{exc.error_count()} malformed field(s)") from None
        try:
            chain = tuple(load_certificates(answer.certificate_chain_pem.encode()))
            wildcard = normalize_dns_name(f"*.{answer.box_label}.{answer.zone}")
        except LancertError as exc:
            raise refuse(str(exc)) from None
        leaf = chain[0]
        if not public_key_matches(key, leaf.public_key()):
            raise refuse("the certificate is not for the box's key")
        if wildcard not in certificate_names(leaf).dns:
            raise refuse(f"the certificate does not cover {wildcard}")
        if not leaf.not_valid_before_utc <= now + timedelta(minutes=5) or now >= leaf.not_valid_after_utc:
            raise refuse("the certificate is not valid now")
        renew_after = answer.renew_after if answer.renew_after.tzinfo else None
        return Credential(chain, key), renew_after


def _name_to_ask_for(status: int, payload: dict[str, Any]) -> tuple[str, str] | None:
    """``(box_label, zone)`` from an ``invalid_csr`` refusal that names the CSR's required name."""
    error = payload.get("error")
    if status != 400 or not isinstance(error, dict) or error.get("code") != "invalid_csr":
        return None
    label, zone = error.get("box_label"), error.get("zone")
    if not isinstance(label, str) or not isinstance(zone, str):
        return None
    try:
        normalize_dns_name(f"*.{label}.{zone}")
    except LancertError:
        return None
    return label.lower(), zone.lower()


def _error_code(payload: dict[str, Any]) -> str | None:
    error = payload.get("error")
    return error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else None


def _error_message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return message[:200] if isinstance(message, str) else ""

