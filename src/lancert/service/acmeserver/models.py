"""SQL tables of the ACME server (same ``Base`` as the service, so one database and one migration
history hold everything). Their history: ``service/migrations/versions/0003_acme_server.py``.

Everything lives in SQL, never in process memory, so that a restart loses nothing and several
instances on one PostgreSQL serve one client: a nonce minted by one instance is consumed by another.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lancert.service.models import Base, UTCDateTime, _now


class AcmeEabKey(Base):
    """An External Account Binding key: binds new ACME accounts to one registered database.

    The HMAC key is stored as is, because checking the binding's MAC needs it (like the CA's
    intermediate key in ``service_state``); it is printed once by ``service acme-eab`` and never logged.
    """

    __tablename__ = "acme_eab_keys"
    __table_args__ = (Index("ix_acme_eab_keys_db_uuid", "db_uuid"),)

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    db_uuid: Mapped[str] = mapped_column(String(128))
    hmac_key: Mapped[str] = mapped_column(String(128))  # base64url, no padding
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AcmeAccount(Base):
    __tablename__ = "acme_accounts"
    __table_args__ = (Index("ix_acme_accounts_thumbprint", "thumbprint", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    thumbprint: Mapped[str] = mapped_column(String(64))  # RFC 7638 SHA-256, base64url: one account per key
    jwk: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated
    contact: Mapped[str] = mapped_column(Text)  # JSON list of mailto: URLs
    db_uuid: Mapped[str] = mapped_column(String(128))
    eab_kid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class AcmeOrder(Base):
    """An order and its authorizations (one per identifier, stored in ``identifiers`` order)."""

    __tablename__ = "acme_orders"
    __table_args__ = (
        Index("ix_acme_orders_account_id", "account_id"),
        Index("ix_acme_orders_replaces", "replaces"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # ready | processing | valid | invalid
    identifiers: Mapped[str] = mapped_column(Text)  # JSON list of DNS names as ordered (wildcards with *.)
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
    certificate_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)  # JSON problem document when invalid
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    replaces: Mapped[str | None] = mapped_column(String(256))  # RFC 9773 certID the order replaces


class AcmeCertificate(Base):
    """A certificate issued through ACME: the chain to download, and its revocation."""

    __tablename__ = "acme_certificates"
    __table_args__ = (Index("ix_acme_certificates_serial", "serial", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(32))
    db_uuid: Mapped[str] = mapped_column(String(128))
    serial: Mapped[str] = mapped_column(String(64))  # lower-case hex, as issued_certificates.serial
    chain_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[int | None] = mapped_column(Integer)


class AcmeUsedNonce(Base):
    """Nonces already consumed. Nonces are minted without a write (HMAC-signed with their time), so a
    replay is caught by this table's primary key, and rows older than a nonce's lifetime are pruned."""

    __tablename__ = "acme_used_nonces"
    __table_args__ = (Index("ix_acme_used_nonces_minted", "minted"),)

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    minted: Mapped[int] = mapped_column(Integer)  # Unix seconds, from the nonce itself
