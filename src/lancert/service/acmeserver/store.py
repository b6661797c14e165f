"""The ACME server's state in SQL: accounts, orders and certificates, as plain values.

Every method runs inside the caller's transaction (a :class:`~sqlalchemy.Connection`): the protocol
opens one per request, so a request costs one commit whatever it reads and writes (its nonce included),
and what it changes lands entirely or not at all. Statements are SQLAlchemy Core built once with bind
parameters (building an expression per call cost four times its execution); those of every request
run on the driver's cursor (:class:`~lancert.service.database.DriverStatement`: SQLAlchemy's execution
layer cost ten times SQLite's work on a SELECT by key). A change that must happen
once (an order leaving ``ready``, a certificate being revoked, a key given to an account) is a
conditional statement whose row count says who won, so two instances on one PostgreSQL cannot both do it.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import josepy as jose
from sqlalchemy import Connection, bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from lancert.service.acmeserver.models import ACME_ACCOUNTS as ACCOUNTS
from lancert.service.acmeserver.models import ACME_CERTIFICATES as CERTIFICATES
from lancert.service.acmeserver.models import ACME_EAB_KEYS as EAB_KEYS
from lancert.service.acmeserver.models import ACME_ORDERS as ORDERS
from lancert.service.database import DriverStatement

MAX_LISTED_ORDERS = 1000

# With its EAB key's revocation: revoking the key shuts the accounts it opened too (a leaked pair must
# not leave an account behind that keeps ordering). Every signed request runs it, so through the driver
# (DriverStatement): the columns are strings, and the revocation moment is only tested for NULL.
_ACCOUNT_BY_ID = DriverStatement(
    select(ACCOUNTS.c.id, ACCOUNTS.c.thumbprint, ACCOUNTS.c.jwk, ACCOUNTS.c.status, ACCOUNTS.c.contact,
           ACCOUNTS.c.db_uuid, ACCOUNTS.c.eab_kid, EAB_KEYS.c.revoked_at.label("eab_revoked_at"))
    .outerjoin(EAB_KEYS, EAB_KEYS.c.kid == ACCOUNTS.c.eab_kid)
    .where(ACCOUNTS.c.id == bindparam("id")))
_ACCOUNT_BY_THUMBPRINT = DriverStatement(
    select(ACCOUNTS).where(ACCOUNTS.c.thumbprint == bindparam("thumbprint")))
# No row if the key is taken: INSERT ... SELECT ... WHERE NOT EXISTS keeps the transaction usable on
# PostgreSQL, where a failed INSERT would abort it (the UNIQUE index still guards a concurrent race).
_INSERT_ACCOUNT = insert(ACCOUNTS)
_KEY_TAKEN = DriverStatement(select(exists().where(ACCOUNTS.c.thumbprint == bindparam("thumbprint"))))
# The statements of the order flow run through the driver (DriverStatement: every signed request runs
# one to three of them); INSERTs name every column, since nothing fills a Python-side default there.
_ORDER_BY_ID = DriverStatement(select(ORDERS).where(ORDERS.c.id == bindparam("id")))
_INSERT_ORDER = DriverStatement(insert(ORDERS), column_keys=[c.key for c in ORDERS.c])
_REPLACING = DriverStatement(
    select(ORDERS).where(ORDERS.c.replaces == bindparam("replaces"), ORDERS.c.status != "invalid"))
_ORDER_IDS = DriverStatement(
    select(ORDERS.c.id)
    .where(ORDERS.c.account_id == bindparam("account_id"), ORDERS.c.status != "invalid")
    .order_by(ORDERS.c.created_at.desc()).limit(MAX_LISTED_ORDERS))
_CLAIM_ORDER = DriverStatement(
    update(ORDERS).where(ORDERS.c.id == bindparam("order_id"), ORDERS.c.status == "ready")
    .values(status="processing"))
_FAIL_ORDER = DriverStatement(
    update(ORDERS).where(ORDERS.c.id == bindparam("order_id"))
    .values(status="invalid", error=bindparam("problem")))
_COMPLETE_ORDER = DriverStatement(
    update(ORDERS).where(ORDERS.c.id == bindparam("order_id"))
    .values(status="valid", certificate_id=bindparam("certificate_id")))
_INSERT_CERTIFICATE = DriverStatement(insert(CERTIFICATES), column_keys=[c.key for c in CERTIFICATES.c])
_CERTIFICATE_BY_ID = DriverStatement(select(CERTIFICATES).where(CERTIFICATES.c.id == bindparam("id")))
_CERTIFICATE_BY_SERIAL = DriverStatement(
    select(CERTIFICATES).where(CERTIFICATES.c.serial == bindparam("serial")))
_REVOKE = DriverStatement(
    update(CERTIFICATES)
    .where(CERTIFICATES.c.id == bindparam("certificate_id"), CERTIFICATES.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"), revocation_reason=bindparam("reason")))


def new_id() -> str:
    """96 random bits, URL-safe: object URLs are not guessable (they are still checked per account)."""
    return secrets.token_urlsafe(12)


def now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)
def _jwk(text: str) -> jose.JWK:
    """Parsed account keys, by their stored JSON: parsing one (a point decompression for EC) cost more
    than the SQL read of the account; the JSON is what is stored, so a changed key misses the cache."""
    return jose.JWK.from_json(json.loads(text))


@dataclass(frozen=True)
class Account:
    id: str
    key: jose.JWK
    thumbprint: str
    status: str
    contact: tuple[str, ...]
    db_uuid: str
    eab_kid: str
    eab_revoked: bool = False

    @classmethod
    def of(cls, row: Any) -> Account:
        return cls(row.id, _jwk(row.jwk), row.thumbprint, row.status, tuple(json.loads(row.contact)),
                   row.db_uuid, row.eab_kid, getattr(row, "eab_revoked_at", None) is not None)


@dataclass(frozen=True)
class Order:
    id: str
    account_id: str
    status: str
    names: tuple[str, ...]
    expires: datetime
    created_at: datetime
    certificate_id: str | None
    error: dict[str, Any] | None
    replaces: str | None = None

    @property
    def current_status(self) -> str:
        """An order not finalized before it expires is invalid (RFC 8555 7.1.6); nothing needs to write
        that. So is one still processing then: its issuance ended with the instance that ran it (stopped
        mid-order; an issuance lasts minutes at most, an order a day)."""
        expired = self.status in ("ready", "processing") and self.expires <= datetime.now(UTC)
        return "invalid" if expired else self.status

    @classmethod
    def of(cls, row: Any) -> Order:
        return cls(row.id, row.account_id, row.status, tuple(json.loads(row.identifiers)), row.expires,
                   row.created_at, row.certificate_id, json.loads(row.error) if row.error else None,
                   row.replaces)


@dataclass(frozen=True)
class Certificate:
    id: str
    order_id: str
    account_id: str
    db_uuid: str
    serial: str
    chain_pem: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> Certificate:
        return cls(row.id, row.order_id, row.account_id, row.db_uuid, row.serial, row.chain_pem,
                   row.not_before, row.not_after,
                   row.revoked_at)


class _Row:
    """Attribute access over a dict of values just inserted (no read back needed)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class AcmeStore:
    # accounts
    def account(self, c: Connection, account_id: str) -> Account | None:
        row = _ACCOUNT_BY_ID(c, {"id": account_id}).first()
        return Account.of(row) if row else None

    def account_by_thumbprint(self, c: Connection, thumbprint: str) -> Account | None:
        row = _ACCOUNT_BY_THUMBPRINT(c, {"thumbprint": thumbprint}).first()
        return Account.of(row) if row else None

    def create_account(self, c: Connection, key: jose.JWK, thumbprint: str, contact: list[str],
                       db_uuid: str, eab_kid: str) -> Account | None:
        """The new account, or None if a concurrent request gave this key an account first."""
        values = {"id": new_id(), "thumbprint": thumbprint, "jwk": json.dumps(key.to_partial_json()),
                  "status": "valid", "contact": json.dumps(contact), "db_uuid": db_uuid,
                  "eab_kid": eab_kid, "created_at": now()}
        try:
            with c.begin_nested():  # a savepoint: a lost race must not abort the request's transaction
                c.execute(_INSERT_ACCOUNT, values)
        except IntegrityError:
            return None
        return Account.of(_Row(values))

    def set_contact(self, c: Connection, account_id: str, contact: list[str]) -> None:
        c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(contact=json.dumps(contact)))

    def deactivate(self, c: Connection, account_id: str) -> None:
        c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(status="deactivated"))

    def change_key(self, c: Connection, account_id: str, key: jose.JWK, thumbprint: str) -> bool:
        """False if the key is already an account's (the UNIQUE thumbprint decides a race)."""
        if _KEY_TAKEN(c, {"thumbprint": thumbprint}).scalar():
            return False
        try:
            with c.begin_nested():  # a savepoint: a lost race must not abort the request's transaction
                c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(
                    jwk=json.dumps(key.to_partial_json()), thumbprint=thumbprint))
        except IntegrityError:
            return False
        return True

    # orders
    def create_order(self, c: Connection, account_id: str, names: list[str], expires: datetime,
                     replaces: str | None = None) -> Order:
        values = {"id": new_id(), "account_id": account_id, "status": "ready",
                  "identifiers": json.dumps(names), "expires": expires, "certificate_id": None,
                  "error": None, "created_at": now(), "replaces": replaces}
        _INSERT_ORDER(c, values)
        return Order.of(_Row(values))

    def order(self, c: Connection, order_id: str) -> Order | None:
        row = _ORDER_BY_ID(c, {"id": order_id}).first()
        return Order.of(row) if row else None

    def replaced_by(self, c: Connection, cert_id: str) -> str | None:
        """The order, not invalid, that already replaces the certificate ``cert_id`` (RFC 9773), if any."""
        for row in _REPLACING(c, {"replaces": cert_id}):
            order = Order.of(row)
            if order.current_status != "invalid":
                return order.id
        return None

    def order_ids(self, c: Connection, account_id: str) -> list[str]:
        """The account's orders that are not invalid, newest first (RFC 8555 7.1.2.1)."""
        return [r.id for r in _ORDER_IDS(c, {"account_id": account_id})]

    def claim_for_finalize(self, c: Connection, order_id: str) -> bool:
        """ready -> processing, once: the one request that wins issues the certificate."""
        return _CLAIM_ORDER(c, {"order_id": order_id}).rowcount == 1

    def fail_order(self, c: Connection, order_id: str, error: dict[str, Any]) -> None:
        _FAIL_ORDER(c, {"order_id": order_id, "problem": json.dumps(error)})

    def complete_order(self, c: Connection, order_id: str, certificate: dict[str, Any]) -> None:
        _INSERT_CERTIFICATE(c, certificate)
        _COMPLETE_ORDER(c, {"order_id": order_id, "certificate_id": certificate["id"]})

    # certificates
    def certificate(self, c: Connection, certificate_id: str) -> Certificate | None:
        row = _CERTIFICATE_BY_ID(c, {"id": certificate_id}).first()
        return Certificate.of(row) if row else None

    def certificate_by_serial(self, c: Connection, serial_hex: str) -> Certificate | None:
        row = _CERTIFICATE_BY_SERIAL(c, {"serial": serial_hex}).first()
        return Certificate.of(row) if row else None

    def revoke(self, c: Connection, certificate_id: str, reason: int) -> bool:
        """False if it was revoked already."""
        values = {"certificate_id": certificate_id, "at": now(), "reason": reason}
        return _REVOKE(c, values).rowcount == 1
