"""What each embedded DNS worker runs to read the TXT table (:mod:`lancert.service.dnsrecords`).

A worker is a process of its own (spawned: it imports everything it uses), started before the service
answers, so what it imports is start-up time of every ``service run`` and ``lancert up``: SQLAlchemy with
the ORM models took 0.2-0.4 s of its 0.3-0.6 s. On a SQLite file the worker therefore reads the table
with the standard library's ``sqlite3`` (one ``SELECT`` per refresh, a snapshot like any WAL reader's);
every other URL (PostgreSQL, SQLite URLs with options) goes through SQLAlchemy as before. This module
imports neither SQLAlchemy nor the models: unpickling the worker's reader imports only this.
"""

from __future__ import annotations

import functools
import sqlite3
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lancert.service.database import Database

# The table and columns of lancert.service.models.DnsTxtRecord: tests/service/test_txt_reader.py reads
# with it what the service wrote through the model.
TXT_QUERY = "SELECT name, value FROM dns_txt_records ORDER BY id"
# As the service's own SQLite connections wait for a lock (PRAGMA busy_timeout=30000).
BUSY_TIMEOUT = 30.0

TxtReader = functools.partial[Mapping[str, Sequence[str]]]


def sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (``sqlite:////abs/path`` is ``/abs/path``, as for
    SQLAlchemy); None for anything else: other databases, in-memory ones, URLs with options."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def read_sqlite_txt(path: str) -> dict[str, list[str]]:
    """The whole table, name -> values in insertion order, as :func:`read_txt_records` returns it.

    Opened read-write without creating (``mode=rw``: a missing file is an error, as a missing table is,
    and the worker answers SERVFAIL once its snapshot is stale), one connection per refresh (a failed
    one leaves nothing behind; opening costs far less than the 0.5 s between refreshes)."""
    uri = f"file:{urllib.parse.quote(path)}?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None,
                                 check_same_thread=False)
    try:
        records: dict[str, list[str]] = {}
        for name, value in connection.execute(TXT_QUERY):
            records.setdefault(name, []).append(value)
        return records
    finally:
        connection.close()


def open_txt_reader(url: str) -> TxtReader:
    """The snapshot reader of a worker (made inside it: no connection crosses a process boundary)."""
    path = sqlite_file(url)
    if path is not None:
        return functools.partial(read_sqlite_txt, path)
    from lancert.service.database import Database

    return functools.partial(read_txt_records, Database(url))


def read_txt_records(database: Database) -> dict[str, list[str]]:
    """The whole table, name -> values in insertion order (it holds only challenges in flight)."""
    from sqlalchemy import select

    from lancert.service.models import DNS_TXT_RECORDS

    records: dict[str, list[str]] = {}
    with database.reading_connection() as connection:
        rows = connection.execute(
            select(DNS_TXT_RECORDS.c.name, DNS_TXT_RECORDS.c.value).order_by(DNS_TXT_RECORDS.c.id)
        )
        for name, value in rows:
            records.setdefault(name, []).append(value)
    return records
