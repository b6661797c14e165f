"""The ACME server's state in SQL: accounts, orders and certificates, as plain values.

Statements are SQLAlchemy Core, built once (the per-request path, as in the service's provisioning).
A state change that must happen once (an order leaving ``ready``, a certificate being revoked) is a
conditional UPDATE whose row count says who won, so two instances on one PostgreSQL cannot both do it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import josepy as jose
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from lancert.acme.models import AcmeAccount, AcmeCertificate, AcmeOrder
from lancert.service.database import Database

ACCOUNTS = AcmeAccount.__table__
ORDERS = AcmeOrder.__table__
CERTIFICATES = AcmeCertificate.__table__
MAX_LISTED_ORDERS = 1000


def new_id() -> str:
    """96 random bits, URL-safe: object URLs are not guessable (they are still checked per account)."""
    return secrets.token_urlsafe(12)


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back (stored as UTC); PostgreSQL aware ones.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Account:
    id: str
    key: jose.JWK
    thumbprint: str
    status: str
    contact: tuple[str, ...]
    db_uuid: str
    eab_kid: str

    @classmethod
    def of(cls, row: Any) -> Account:
        return cls(row.id, jose.JWK.from_json(json.loads(row.jwk)), row.thumbprint, row.status,
                   tuple(json.loads(row.contact)), row.db_uuid, row.eab_kid)


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

    @classmethod
    def of(cls, row: Any) -> Order:
        return cls(row.id, row.account_id, row.status, tuple(json.loads(row.identifiers)), _utc(row.expires),
                   _utc(row.created_at), row.certificate_id, json.loads(row.error) if row.error else None)


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
                   _utc(row.not_before), _utc(row.not_after),
                   _utc(row.revoked_at) if row.revoked_at else None)


class AcmeStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # accounts
    def account(self, account_id: str) -> Account | None:
        with self.database.reading_connection() as c:
            row = c.execute(select(ACCOUNTS).where(ACCOUNTS.c.id == account_id)).first()
        return Account.of(row) if row else None

    def account_by_thumbprint(self, thumbprint: str) -> Account | None:
        with self.database.reading_connection() as c:
            row = c.execute(select(ACCOUNTS).where(ACCOUNTS.c.thumbprint == thumbprint)).first()
        return Account.of(row) if row else None

    def create_account(
        self, key: jose.JWK, thumbprint: str, contact: list[str], db_uuid: str, eab_kid: str
    ) -> Account | None:
        """The new account, or None when another request made one for this key first."""
        values = {"id": new_id(), "thumbprint": thumbprint, "jwk": json.dumps(key.to_partial_json()),
                  "status": "valid", "contact": json.dumps(contact), "db_uuid": db_uuid,
                  "eab_kid": eab_kid, "created_at": now()}
        try:
            with self.database.writing_connection() as c:
                c.execute(insert(ACCOUNTS), values)
        except IntegrityError:
            return None
        return self.account(values["id"])

    def update_account(self, account_id: str, **values: Any) -> None:
        if "contact" in values:
            values["contact"] = json.dumps(values["contact"])
        with self.database.writing_connection() as c:
            c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(**values))

    def change_key(self, account_id: str, key: jose.JWK, thumbprint: str) -> bool:
        """False if the key is already another account's (the UNIQUE thumbprint decides)."""
        try:
            with self.database.writing_connection() as c:
                c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(
                    jwk=json.dumps(key.to_partial_json()), thumbprint=thumbprint))
        except IntegrityError:
            return False
        return True

    # orders
    def create_order(self, account_id: str, names: list[str], expires: datetime) -> Order:
        values = {"id": new_id(), "account_id": account_id, "status": "ready",
                  "identifiers": json.dumps(names), "expires": expires, "certificate_id": None,
                  "error": None, "created_at": now()}
        with self.database.writing_connection() as c:
            c.execute(insert(ORDERS), values)
        return Order.of(_Row(values))

    def order(self, order_id: str) -> Order | None:
        with self.database.reading_connection() as c:
            row = c.execute(select(ORDERS).where(ORDERS.c.id == order_id)).first()
        return Order.of(row) if row else None

    def order_ids(self, account_id: str) -> list[str]:
        """The account's orders that are not invalid, newest first (RFC 8555 7.1.2.1)."""
        with self.database.reading_connection() as c:
            rows = c.execute(
                select(ORDERS.c.id)
                .where(ORDERS.c.account_id == account_id, ORDERS.c.status != "invalid")
                .order_by(ORDERS.c.created_at.desc())
                .limit(MAX_LISTED_ORDERS)
            ).all()
        return [r.id for r in rows]

    def claim_for_finalize(self, order_id: str) -> bool:
        """ready -> processing, once: the one request that wins issues the certificate."""
        with self.database.writing_connection() as c:
            result = c.execute(update(ORDERS).where(ORDERS.c.id == order_id, ORDERS.c.status == "ready")
                               .values(status="processing"))
        return result.rowcount == 1

    def fail_order(self, order_id: str, error: dict[str, Any]) -> None:
        with self.database.writing_connection() as c:
            c.execute(update(ORDERS).where(ORDERS.c.id == order_id)
                      .values(status="invalid", error=json.dumps(error)))

    def complete_order(self, connection: Connection, order: Order, certificate: dict[str, Any]) -> None:
        """Record the certificate and mark the order valid, in the caller's transaction (with the
        service-wide ``issued_certificates`` row)."""
        connection.execute(insert(CERTIFICATES), certificate)
        connection.execute(update(ORDERS).where(ORDERS.c.id == order.id)
                           .values(status="valid", certificate_id=certificate["id"]))

    # certificates
    def certificate(self, certificate_id: str) -> Certificate | None:
        with self.database.reading_connection() as c:
            row = c.execute(select(CERTIFICATES).where(CERTIFICATES.c.id == certificate_id)).first()
        return Certificate.of(row) if row else None

    def certificate_by_serial(self, serial_hex: str) -> Certificate | None:
        with self.database.reading_connection() as c:
            row = c.execute(select(CERTIFICATES).where(CERTIFICATES.c.serial == serial_hex)).first()
        return Certificate.of(row) if row else None

    def revoke(self, certificate_id: str, reason: int) -> bool:
        """False if it was revoked already."""
        with self.database.writing_connection() as c:
            result = c.execute(
                update(CERTIFICATES)
                .where(CERTIFICATES.c.id == certificate_id, CERTIFICATES.c.revoked_at.is_(None))
                .values(revoked_at=now(), revocation_reason=reason)
            )
        return result.rowcount == 1


class _Row:
    """Attribute access over a dict of values just inserted (no read back needed)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
