"""TXT records the DNS server publishes from the service's database (ACME dns-01 challenges).

The issuer writes them, the DNS server (in this or any other instance) reads them: SQL is the channel.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select

from lancert.dns import TxtLookup
from lancert.service.database import Database
from lancert.service.models import DnsTxtRecord


def add_txt_record(database: Database, name: str, value: str) -> None:
    with database.transaction() as session:
        session.add(DnsTxtRecord(name=name.lower().rstrip("."), value=value))


def remove_txt_records(database: Database, name: str) -> None:
    with database.transaction() as session:
        session.execute(delete(DnsTxtRecord).where(DnsTxtRecord.name == name.lower().rstrip(".")))


def database_txt_lookup(database: Database) -> TxtLookup:
    def lookup(name: str) -> Sequence[str]:
        with database.reading() as session:
            return list(
                session.scalars(
                    select(DnsTxtRecord.value).where(DnsTxtRecord.name == name).order_by(DnsTxtRecord.id)
                )
            )

    return lookup
