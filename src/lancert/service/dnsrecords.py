"""TXT records the DNS server publishes from the service's database (ACME dns-01 challenges), and the
CAA issuer values of the zone.

The issuer writes them, the DNS server (in this or any other instance) reads them: SQL is the channel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete, select

from lancert.dns import TxtLookup
from lancert.service.database import Database
from lancert.service.models import DnsTxtRecord, ServiceState

STATE_CAA_ISSUERS = "caa_issuers"


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


def store_caa_issuers(database: Database, issuers: Sequence[str]) -> None:
    """The CA domains the zone's CAA ``issue`` records name (RFC 8659), as the upstream CA's directory
    lists them in ``meta.caaIdentities`` (Let's Encrypt: ``letsencrypt.org``); empty: no CAA records."""
    with database.transaction() as session:
        row = session.get(ServiceState, STATE_CAA_ISSUERS)
        value = json.dumps(list(issuers))
        if not issuers:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(ServiceState(name=STATE_CAA_ISSUERS, value=value))
        else:
            row.value = value


def caa_issuers(database: Database) -> list[str]:
    """What :func:`store_caa_issuers` stored: data for the DNS server's zone-apex CAA answer."""
    with database.reading() as session:
        value = session.scalar(select(ServiceState.value).where(ServiceState.name == STATE_CAA_ISSUERS))
    try:
        issuers = json.loads(value) if value else []
    except ValueError:
        return []
    return [i for i in issuers if isinstance(i, str)] if isinstance(issuers, list) else []
