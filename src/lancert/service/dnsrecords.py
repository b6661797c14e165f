"""TXT records the DNS server publishes from the service's database (ACME dns-01 challenges), and the
CAA issuer values of the zone.

The issuer writes them, the DNS servers read them: SQL is the channel, so every instance on one
PostgreSQL and every PowerDNS configured by ``lancert dns powerdns`` serves the same records.

Visibility contract, for the flows that ask a CA to validate: a record is served by every embedded DNS
worker of every instance, and by PowerDNS as configured by lancert, at the latest ``TXT_VISIBLE_WITHIN``
seconds after :func:`add_txt_record` returns (its transaction is committed then). Embedded workers read
the whole table every 0.5 s and answer SERVFAIL rather than from a snapshot older than that bound;
PowerDNS as configured by lancert re-reads it at most every 0.5 s per thread and caches answers 1 s.
So: add, then :func:`wait_until_visible`, then tell the CA.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert

from lancert.dns import TXT_MAX_STALENESS
from lancert.service.database import Database
from lancert.service.models import DNS_TXT_RECORDS, read_state, write_state
from lancert.service.txtreader import open_txt_reader

if TYPE_CHECKING:
    from lancert.dns import TxtSourceFactory

STATE_CAA_ISSUERS = "caa_issuers"

TXT_VISIBLE_WITHIN = TXT_MAX_STALENESS


def add_txt_record(database: Database, name: str, value: str) -> None:
    with database.transaction() as connection:
        connection.execute(insert(DNS_TXT_RECORDS).values(name=name.lower().rstrip("."), value=value))


def remove_txt_records(database: Database, name: str) -> None:
    with database.transaction() as connection:
        connection.execute(delete(DNS_TXT_RECORDS).where(DNS_TXT_RECORDS.c.name == name.lower().rstrip(".")))


def wait_until_visible(added_at: float | None = None) -> None:
    """Sleep until records committed at ``added_at`` (``time.monotonic()`` taken after the commit;
    default now) are served by every DNS server of the zone.

    The whole bound, always: this instance's own workers often serve a record sooner, but the CA's
    resolver may ask another instance's workers or a PowerDNS reading the same table, whose snapshots
    and caches no instance can see; only the bound covers them all. The price is 2 s per order, which
    often puts a first compatible call through a public CA past its 3.5 s deadline (the box gets
    ``issuance_pending`` and its certificate on its next call)."""
    start = time.monotonic() if added_at is None else added_at
    time.sleep(max(0.0, start + TXT_VISIBLE_WITHIN - time.monotonic()))


def txt_source(url: str) -> TxtSourceFactory:
    """What the DNS workers are given: each opens its own connection to ``url`` (no connection crosses
    a process boundary) and reads the table through SQLAlchemy, or on a SQLite file through
    ``sqlite3`` alone (:mod:`lancert.service.txtreader`: a worker then starts without SQLAlchemy)."""
    return functools.partial(open_txt_reader, url)


def store_caa_issuers(database: Database, issuers: Sequence[str]) -> None:
    """The CA domains the zone's CAA ``issue`` records name (RFC 8659), as the upstream CA's directory
    lists them in ``meta.caaIdentities`` (Let's Encrypt: ``letsencrypt.org``); empty: no CAA records,
    stored as no row at all, so a service on the internal CA keeps no state it does not use."""
    with database.transaction() as connection:
        write_state(connection, STATE_CAA_ISSUERS, json.dumps(list(issuers)) if issuers else None)


def publish_caa(database: Database, issuer: object) -> None:
    """At service start: CAA for the zone names the issuing CA only, the upstream CA's own identities
    (``issuer.caa_identities``), or none at all for the internal CA (whose name constraints already
    bound it, and which no public CAA governs). An upstream CA whose directory could not be read
    (``caa_identities`` None) leaves what an earlier start stored: a restart during a CA outage must not
    drop the zone's CAA records."""
    identities = getattr(issuer, "caa_identities", ())
    if identities is not None:
        store_caa_issuers(database, tuple(identities))


def caa_issuers(database: Database) -> list[str]:
    """What :func:`store_caa_issuers` stored: data for the DNS server's zone-apex CAA answer."""
    with database.reading() as connection:
        value = read_state(connection, STATE_CAA_ISSUERS)
    try:
        issuers = json.loads(value) if value else []
    except ValueError:
        return []
    return [i for i in issuers if isinstance(i, str)] if isinstance(issuers, list) else []
