"""The one place that decides whether a box may have a certificate, and for which names.

The native API, the compatible JSON-RPC endpoint and the ACME server (:mod:`.acmeserver`) all ask
:class:`Authority`: credentials (with failed-credential rate limits), eligibility of the database, the
box's label, and whether the names a CSR asks for lie inside the box's own subdomain.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from lancert.pki import SubjectNames
from lancert.service.errors import NameNotAllowed, NotEligible
from lancert.service.ratelimit import FailedCredentialLimiter
from lancert.service.registry import DatabaseKind, DatabaseRecord, Registry, SubscriptionStatus

BOX_LABEL_LENGTH = 12  # base32 characters: 60 bits, so labels of different boxes do not collide


class Refusal(StrEnum):
    """The ``reason`` of a ``not_eligible`` answer (the contract with the box)."""

    UNKNOWN_DATABASE_OR_CODE = "unknown_database_or_code"
    NOT_PRODUCTION = "not_production"
    NO_IOT_BOX_LINE = "no_iot_box_line"
    SUBSCRIPTION_NOT_IN_PROGRESS = "subscription_not_in_progress"


_MESSAGES = {
    Refusal.UNKNOWN_DATABASE_OR_CODE: "unknown database or wrong enterprise code",
    Refusal.NOT_PRODUCTION: "the database is not a production database (staging, duplicate or development)",
    Refusal.NO_IOT_BOX_LINE: "the subscription has no IoT box line; add one, then refresh the box homepage "
    "or restart the box",
    Refusal.SUBSCRIPTION_NOT_IN_PROGRESS: "the subscription is not in progress",
}


def refuse(reason: Refusal) -> NotEligible:
    return NotEligible(_MESSAGES[reason], reason=reason.value)


def check_eligible(database: DatabaseRecord) -> None:
    """The registry's rules for a database already identified: :class:`NotEligible` with the reason."""
    if database.kind is not DatabaseKind.PRODUCTION:
        raise refuse(Refusal.NOT_PRODUCTION)
    if database.subscription is not SubscriptionStatus.IN_PROGRESS:
        raise refuse(Refusal.SUBSCRIPTION_NOT_IN_PROGRESS)
    if not database.iot_box_line:
        raise refuse(Refusal.NO_IOT_BOX_LINE)


@dataclass(frozen=True)
class Grant:
    """Permission for one box (or, for the compatible call, one database) to get one certificate."""

    database: DatabaseRecord
    box_id: str | None
    box_label: str
    zone: str

    @property
    def hostname_pattern(self) -> str:
        return f"*.{self.box_label}.{self.zone}"

    @property
    def names(self) -> SubjectNames:
        """What the certificate covers: the whole subdomain, so a new DHCP address keeps it valid."""
        return wildcard_names(self.hostname_pattern)


@functools.lru_cache(maxsize=10_000)
def wildcard_names(pattern: str) -> SubjectNames:
    """The names of a grant's wildcard, parsed once per label (a grant is made per request, and parsing
    and normalizing the name was ~15 us of every certificate). Bounded like the label cache; the value
    is immutable (tuples), so every grant of a label may share it."""
    return SubjectNames.parse(dns=[pattern])


def box_label(label_secret: bytes, db_uuid: str, box_id: str | None) -> str:
    """Stable per (database, box), one per database for the compatible call and ACME, and not
    derivable from the UUID without the service's secret (so a label does not reveal the customer)."""
    message = f"native\0{db_uuid}\0{box_id}" if box_id is not None else f"compatible\0{db_uuid}"
    digest = hmac.new(label_secret, message.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:BOX_LABEL_LENGTH]


class Authority:
    # Labels already derived, per (database, box): an HMAC and a base32 encoding per request otherwise
    # (a label is no secret, it is in the box's DNS names). Emptied when full: a bound, not an LRU.
    LABEL_CACHE_SIZE = 10_000

    def __init__(
        self, registry: Registry, limiter: FailedCredentialLimiter, *, zone: str, label_secret: bytes
    ) -> None:
        self.registry = registry
        registry.prepare_for_requests()
        self.limiter = limiter
        self.zone = zone
        self._label_secret = label_secret
        self._labels: dict[tuple[str, str | None], str] = {}

    def box_label(self, db_uuid: str, box_id: str | None) -> str:
        key = (db_uuid, box_id)
        label = self._labels.get(key)
        if label is None:
            label = box_label(self._label_secret, db_uuid, box_id)
            if len(self._labels) >= self.LABEL_CACHE_SIZE:
                self._labels.clear()
            self._labels[key] = label
        return label

    def _guess(self, db_uuid: str, enterprise_code: str) -> str:
        """What identifies one guess for the rate limit, keyed so the stored digest reveals no code."""
        message = f"guess\0{db_uuid}\0{enterprise_code}".encode()
        return hmac.new(self._label_secret, message, hashlib.sha256).hexdigest()

    def authorize(
        self, db_uuid: str, enterprise_code: str, *, box_id: str | None, source_ip: str, now: bool = False
    ) -> Grant:
        """A grant, or :class:`NotEligible` / :class:`RateLimited` (the API's answers, as types).

        ``now``: for the event loop, :class:`~lancert.service.database.WouldWait` instead of waiting
        for a lock or paying an scrypt (the same checks otherwise; nothing is written before it)."""
        # One read snapshot for the failure counters and the registry row (fresh on every request: a
        # line added a moment ago counts); the code is checked after it ends (scrypt on a miss).
        store = self.registry.database
        with store.now_transaction(write=False) if now else store.reading_connection() as connection:
            self.limiter.check(source_ip, db_uuid, connection=connection)
            found = self.registry.find(db_uuid, connection=connection)
        database = self.registry.check_code(found, db_uuid, enterprise_code, now=now)
        if database is None:
            self.limiter.record_failure(source_ip, db_uuid, self._guess(db_uuid, enterprise_code))
            raise refuse(Refusal.UNKNOWN_DATABASE_OR_CODE)
        self.check_eligible(database)
        return Grant(database, box_id, self.box_label(database.uuid, box_id), self.zone)

    def check_eligible(self, database: DatabaseRecord) -> None:
        """The registry's rules, for a database already identified (by its code, or by the ACME
        account it was bound to): :class:`NotEligible` with the reason, else nothing."""
        check_eligible(database)

    def database_grant(self, database: DatabaseRecord) -> Grant:
        """The grant of a whole database (its own label, as for the compatible call): what an ACME
        account bound to it may order, re-checked on every order and finalize."""
        self.check_eligible(database)
        return Grant(database, None, self.box_label(database.uuid, None), self.zone)

    def check_requested_names(self, grant: Grant, requested: SubjectNames) -> None:
        """A CSR may ask for the wildcard or names inside the box's subdomain, nothing else (no IPs)."""
        suffix = f".{grant.box_label}.{grant.zone}"
        outside = [str(ip) for ip in requested.ips]
        outside += [
            name
            for name in requested.dns
            if not name.lower().endswith(suffix)
            or name.lower()[: -len(suffix)].count(".") > 0
            or (name.startswith("*") and name.lower() != grant.hostname_pattern)
        ]
        if outside:
            raise NameNotAllowed(f"names outside this box's subdomain *{suffix}: {', '.join(outside[:5])}")
