"""The compatible call's per-database certificate and key, kept in SQL so every instance hands the same
pair to every box of a database until its renewal time (as the field service does: one wildcard per
database, one upstream order per renewal, not one per box restart).

Threat model of the stored key: it sits in the service's database in clear, next to the internal CA's
signing key. Whoever can read that database can already issue for the whole zone, so encrypting the row
with a key kept beside it would protect nothing; the SQLite file is created 0600, and on PostgreSQL the
role's credentials guard it. The key is handed out by design (the compatible call returns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from lancert.pki import PrivateKey, private_key_pem
from lancert.service.database import Database
from lancert.service.issuer import IssuedChain
from lancert.service.models import COMPATIBLE_CREDENTIALS, put


@dataclass(frozen=True)
class CachedCredential:
    db_uuid: str
    box_label: str
    issuer: str
    chain_pem: str
    private_key_pem: str
    not_before: datetime
    not_after: datetime
    renew_after: datetime

    def usable(self, now: datetime) -> bool:
        """A box can serve it now (possibly inside its renewal window)."""
        return self.not_before <= now < self.not_after

    def fresh(self, now: datetime, issuer: str) -> bool:
        """Hand it out without ordering: from the issuer in use, and not yet due for renewal."""
        return self.issuer == issuer and self.usable(now) and now < self.renew_after


def load(database: Database, db_uuid: str) -> CachedCredential | None:
    credentials = COMPATIBLE_CREDENTIALS
    with database.reading() as connection:
        row = connection.execute(select(credentials).where(credentials.c.db_uuid == db_uuid)).first()
        if row is None:
            return None
        return CachedCredential(
            row.db_uuid,
            row.box_label,
            row.issuer,
            row.chain_pem,
            row.private_key_pem,
            row.not_before,
            row.not_after,
            row.renew_after,
        )


def store(
    database: Database, db_uuid: str, box_label: str, issuer: str, issued: IssuedChain, key: PrivateKey
) -> CachedCredential:
    cached = CachedCredential(
        db_uuid,
        box_label,
        issuer,
        issued.chain_pem(),
        private_key_pem(key).decode(),
        issued.not_before,
        issued.not_after,
        issued.renew_after,
    )
    with database.transaction() as connection:
        put(connection, COMPATIBLE_CREDENTIALS, {"db_uuid": db_uuid}, {
            "box_label": box_label, "issuer": issuer, "chain_pem": cached.chain_pem,
            "private_key_pem": cached.private_key_pem, "not_before": cached.not_before,
            "not_after": cached.not_after, "renew_after": cached.renew_after,
        })
    return cached
