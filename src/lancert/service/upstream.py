"""The upstream ACME issuer: certificates from a public CA (Let's Encrypt; Pebble in the tests), proven
by DNS-01 through lancert's own DNS.

Built on certbot's ``acme`` library (messages, JWS, polling) and josepy. For ``*.<label>.<zone>`` the
CA asks for a TXT record at ``_acme-challenge.<label>.<zone>``: the issuer writes it into the
``dns_txt_records`` table, which every instance's DNS server answers from, and waits the documented
visibility bound (:data:`lancert.service.dnsrecords.TXT_VISIBLE_WITHIN`, 2 s) before asking the CA to
validate, whichever instance the CA's resolver reaches. The record is removed when the order ends, however
it ends (and stays served for up to the same bound).

The account key (EC P-256) is made once for the whole service and kept in the ``service_state`` table,
beside the internal CA's key (same protection: the 0600 SQLite file or the PostgreSQL role), so every
instance signs as the same account; the account URL is kept per directory. An External Account Binding
(kid + HMAC key) is sent when the account is first registered, for CAs that demand one (ZeroSSL,
Google Trust Services, Pebble with ``externalAccountBindingRequired``).

Every failure leaves as :class:`~lancert.service.issuer.IssuanceFailed` with a short reason (the ACME
problem type, e.g. ``rateLimited``, or ``upstream_unreachable``) and, when the CA sent one, its
Retry-After: the order desk turns that into a refusal the box understands and a back-off.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lancert.errors import LancertError, UsageError
from lancert.pki import csr_names, load_certificates, load_private_key_pem, private_key_pem, served_chain
from lancert.service.database import LOCK_SERVICE_STATE, Database
from lancert.service.dnsrecords import add_txt_record, remove_txt_records, wait_until_visible
from lancert.service.issuer import IssuanceFailed, IssuedChain
from lancert.service.models import read_state, write_state

log = logging.getLogger("lancert.service.upstream")

STATE_ACCOUNT_KEY = "acme_account_key"
EAB_HMAC_ENV = "LANCERT_ACME_EAB_HMAC"
USER_AGENT = "lancert"
# Network timeout of one HTTP exchange with the CA, and the whole validate-and-finalize poll of one order.
HTTP_TIMEOUT = 15.0
ORDER_TIMEOUT = dt.timedelta(seconds=90)


@dataclass(frozen=True)
class AcmeSettings:
    """What ``lancert service run --issuer acme`` was told. ``eab_hmac`` is the base64url HMAC key; it
    comes from the environment or a 0600 file (:func:`read_eab_hmac`), never from a flag."""

    directory: str
    contact: str | None = None
    ca_bundle: Path | None = None
    eab_kid: str | None = None
    eab_hmac: str | None = None

    def __repr__(self) -> str:  # the HMAC key must not reach a log through a repr
        return (
            f"AcmeSettings(directory={self.directory!r}, contact={self.contact!r}, eab_kid={self.eab_kid!r})"
        )


def read_eab_hmac(path: Path | None) -> str | None:
    """The EAB HMAC key from ``path`` (which must be readable by its owner only), else from
    ``LANCERT_ACME_EAB_HMAC``, else None. Never a command-line value: ``ps`` shows those to every user."""
    if path is not None:
        try:
            info = path.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UsageError(
                    f"{path}: the EAB HMAC key file must be readable by its owner only (chmod 600 {path})"
                )
            value = path.read_text().strip()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the EAB HMAC key ({exc.strerror})") from None
        if not value:
            raise UsageError(f"{path}: the EAB HMAC key file is empty")
        return value
    value = os.environ.get(EAB_HMAC_ENV, "").strip()
    return value or None


def _retry_after_seconds(value: str | None) -> int | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0, int((when - dt.datetime.now(dt.UTC)).total_seconds()))


class _Network(client.ClientNetwork):
    """certbot's ClientNetwork, remembering the Retry-After of the last error answer: ``messages.Error``
    carries the problem document only, and a ``rateLimited`` is useless without its Retry-After."""

    retry_after: int | None = None

    def _check_response(self, response: requests.Response, content_type: str | None = None) -> Any:  # type: ignore[override]
        if not response.ok:
            self.retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        return super()._check_response(response, content_type=content_type)


class AcmeIssuer:
    """An :class:`~lancert.service.issuer.Issuer` that orders from an ACME CA (thread-safe: each order
    has its own client session; the account is shared)."""

    name = "acme"
    needs_csr_names = True
    places_orders = True

    def __init__(self, database: Database, settings: AcmeSettings) -> None:
        self.database = database
        self.settings = settings
        self.description = settings.directory
        self._account_state = "acme_account:" + hashlib.sha256(settings.directory.encode()).hexdigest()[:40]
        self._key: jose.JWKEC | None = None
        self._account_uri: str | None = None
        self._lock = threading.Lock()
        # The directory's meta.caaIdentities; None until a directory was read (the CA unreachable at
        # start): the zone's CAA must then stay as stored, not be emptied.
        self.caa_identities: tuple[str, ...] | None = None

    # -- the account ------------------------------------------------------------------------------------

    def _account_key(self) -> jose.JWKEC:
        """The service's account key, made by the first instance that needs it (under the state lock)."""
        if self._key is not None:
            return self._key
        with self.database.transaction() as connection:
            self.database.advisory_lock(connection, LOCK_SERVICE_STATE)
            stored = read_state(connection, STATE_ACCOUNT_KEY)
            if stored is None:
                key = ec.generate_private_key(ec.SECP256R1())
                stored = private_key_pem(key).decode()
                write_state(connection, STATE_ACCOUNT_KEY, stored)
            uri = read_state(connection, self._account_state)
        self._key = jose.JWKEC(key=load_private_key_pem(stored.encode()))
        self._account_uri = uri
        return self._key

    def _store_account_uri(self, uri: str | None) -> None:
        with self.database.transaction() as connection:
            write_state(connection, self._account_state, uri)
        self._account_uri = uri

    def _client(self) -> tuple[client.ClientV2, _Network, jose.JWKEC]:
        """A client signed in as the service's account, registering it on first use."""
        with self._lock:
            key = self._account_key()
            uri = self._account_uri
        verify: Any = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        net = _Network(key, alg=jose.ES256, verify_ssl=verify, user_agent=USER_AGENT, timeout=HTTP_TIMEOUT)
        directory = client.ClientV2.get_directory(self.settings.directory, net)
        acme = client.ClientV2(directory, net)
        meta = getattr(directory, "meta", None)
        self.caa_identities = tuple(getattr(meta, "caa_identities", None) or ())
        if uri is not None:
            net.account = messages.RegistrationResource(body=messages.Registration(), uri=uri)
            return acme, net, key
        if acme.external_account_required() and not (self.settings.eab_kid and self.settings.eab_hmac):
            raise IssuanceFailed(
                f"the CA at {self.settings.directory} requires External Account Binding: give "
                f"--acme-eab-kid and the HMAC key in {EAB_HMAC_ENV} or --acme-eab-hmac-file",
                reason="externalAccountRequired",
            )
        eab = None
        if self.settings.eab_kid and self.settings.eab_hmac:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=key.public_key(),
                kid=self.settings.eab_kid,
                hmac_key=self.settings.eab_hmac,
                directory=directory,
            )
        registration = messages.NewRegistration.from_data(
            email=self.settings.contact, terms_of_service_agreed=True, external_account_binding=eab
        )
        try:
            regr = acme.new_account(registration)
        except errors.ConflictError as existing:  # the key is known already: that account is ours
            regr = messages.RegistrationResource(body=messages.Registration(), uri=existing.location)
            net.account = regr
        self._store_account_uri(regr.uri)
        log.warning("upstream ACME account %s at %s", regr.uri, self.settings.directory)
        return acme, net, key

    def check_account(self) -> None:
        """Register (or find) the account now: called at start so a bad EAB key shows up at once."""
        self._client()

    # -- issuing ------------------------------------------------------------------------------------------

    def root_certificates(self) -> list[x509.Certificate]:
        """None to hand out: the CA's roots are already in the browsers (that is the point)."""
        return []

    def issue_server_certificate(self, csr: x509.CertificateSigningRequest, names: Any) -> IssuedChain:
        if sorted(csr_names(csr).dns) != sorted(names.dns) or names.ips:
            raise IssuanceFailed(
                f"the CSR must ask for exactly {', '.join(names.dns)} (the CA checks it against the order)",
                reason="csr_names",
            )
        net: _Network | None = None
        for attempt in range(2):
            try:
                acme, net, key = self._client()
                return self._order(acme, key, csr)
            except messages.Error as problem:
                if problem.code == "accountDoesNotExist" and attempt == 0:
                    # The CA forgot us (a test CA restarted, or the account was deactivated): register again.
                    self._store_account_uri(None)
                    continue
                raise self._failure(problem, net) from None
            except errors.ValidationError as failed:
                raise IssuanceFailed(
                    f"the CA could not validate the DNS-01 challenge: {_validation_detail(failed)}",
                    reason="validation_failed",
                ) from None
            except errors.IssuanceError as failed:
                raise self._failure(failed.error, net) from None
            except errors.TimeoutError:
                raise IssuanceFailed(
                    f"the CA did not finish the order within {int(ORDER_TIMEOUT.total_seconds())} s",
                    reason="upstream_timeout",
                ) from None
            except requests.RequestException as exc:
                raise IssuanceFailed(
                    f"the CA at {self.settings.directory} is unreachable: {type(exc).__name__}",
                    reason="upstream_unreachable",
                ) from None
            except (errors.Error, jose.DeserializationError, ValueError, LancertError) as exc:
                if isinstance(exc, IssuanceFailed):
                    raise
                raise IssuanceFailed(
                    f"unusable answer from the CA: {str(exc)[:200] or type(exc).__name__}",
                    reason="upstream_error",
                ) from None
        raise AssertionError("unreachable")

    def _failure(self, problem: messages.Error, net: _Network | None) -> IssuanceFailed:
        code = problem.code or problem.typ.rsplit(":", 1)[-1] or "upstream_error"
        retry_after = net.retry_after if net is not None else None
        detail = (problem.detail or problem.typ)[:300]
        return IssuanceFailed(f"the CA refused: {code}: {detail}", reason=code, retry_after=retry_after)

    def _order(
        self, acme: client.ClientV2, key: jose.JWKEC, csr: x509.CertificateSigningRequest
    ) -> IssuedChain:
        csr_pem = csr.public_bytes(serialization.Encoding.PEM)
        order = acme.new_order(csr_pem)
        published: list[str] = []
        ready: list[messages.ChallengeBody] = []
        values: list[tuple[str, str]] = []
        added_at = time.monotonic()
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:  # reused from an earlier order
                    continue
                challenge = next(
                    (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
                )
                if challenge is None:
                    raise IssuanceFailed(
                        f"the CA offers no dns-01 challenge for {authz.body.identifier.value}",
                        reason="no_dns01",
                    )
                # One TXT per name of the order: _acme-challenge.<label>.<zone> for the wildcard,
                # _acme-challenge.<host>.<label>.<zone> for a host an ACME client of the service ordered.
                record = challenge.chall.validation_domain_name(authz.body.identifier.value)
                values.append((record, challenge.chall.validation(key)))
                ready.append(challenge)
            # A previous owner of these names' order (crashed, or its lease taken over) may have left its
            # values: only this order's are published (all removed first: two names of one order may
            # share a challenge name, as *.<label>.<zone> and <label>.<zone> would).
            for record in dict.fromkeys(r for r, _ in values):
                remove_txt_records(self.database, record)
                published.append(record)
            for record, value in values:
                add_txt_record(self.database, record, value)
                added_at = time.monotonic()  # the bound counts from the commit, which add_txt_record made
            if ready:
                # Every DNS worker of every instance serves a TXT row within TXT_VISIBLE_WITHIN of its
                # commit: asking the CA sooner could make it read the old answer and fail the order.
                # The whole bound, though our own workers are often quicker (wait_until_visible: why).
                wait_until_visible(added_at)
            for challenge in ready:
                acme.answer_challenge(challenge, challenge.response(key))
            # acme polls with naive local datetimes.
            order = acme.poll_and_finalize(order, dt.datetime.now() + ORDER_TIMEOUT)
        finally:
            for record in published:
                remove_txt_records(self.database, record)
        sent = load_certificates(order.fullchain_pem.encode())
        if not sent:
            raise IssuanceFailed("the CA sent no certificate", reason="upstream_error")
        chain = served_chain(sent[0], sent[1:])
        renew_at = self._renewal_time(acme, order.fullchain_pem)
        if renew_at is not None and renew_at >= chain[0].not_valid_after_utc:
            renew_at = None  # a window after expiry is no advice: two thirds of the lifetime instead
        return IssuedChain(chain, renew_at=renew_at)

    def _renewal_time(self, acme: client.ClientV2, fullchain_pem: str) -> dt.datetime | None:
        """The CA's suggested renewal time (ACME Renewal Information, RFC 9773) when it offers one."""
        try:
            acme.directory["renewalInfo"]  # messages.Directory has no ``in``: a missing field is a KeyError
        except KeyError:
            return None
        try:
            moment, _next_check = acme.renewal_time(fullchain_pem.encode())
        except (errors.Error, requests.RequestException, jose.DeserializationError, ValueError) as exc:
            log.warning("renewal information unavailable: %s", exc)
            return None
        if moment is None:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _validation_detail(failed: errors.ValidationError) -> str:
    for authz in failed.failed_authzrs:
        for challenge in authz.body.challenges:
            if challenge.error is not None:
                return (challenge.error.detail or challenge.error.typ)[:300]
    return "no detail from the CA"
