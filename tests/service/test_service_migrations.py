"""The Alembic migrations build exactly the schema the SQLAlchemy models describe (on SQLite and on
PostgreSQL), and the service's moments are UTC both ways on both: a time written in any zone is read
back as the same instant, aware, in UTC; a naive time (zone unknown) is refused, not stored hours off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.exc import StatementError

import lancert.service.acmeserver.models  # noqa: F401 - its tables are the service's too
import postgres_server
from lancert.service.database import Database
from lancert.service.models import DNS_TXT_RECORDS, ISSUED_CERTIFICATES, METADATA

postgres_url = postgres_server.postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    database.migrate()
    try:
        yield database
    finally:
        if request.param == "postgresql":
            METADATA.drop_all(database.engine)
            with database.engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        database.dispose()


def test_the_migrations_build_the_models_schema(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), METADATA)
    assert differences == []


def test_a_moment_in_any_zone_is_read_back_as_the_same_instant_in_utc(database: Database) -> None:
    paris = timezone(timedelta(hours=1))
    not_before = datetime(2026, 12, 1, 23, 30, tzinfo=paris)  # 22:30 UTC
    row = {"serial": "abc1", "db_uuid": "db", "box_id": None, "box_label": "label", "style": "native",
           "issuer": "internal", "not_before": not_before, "not_after": not_before + timedelta(days=90),
           "certificate_pem": "-"}
    with database.writing_connection() as connection:
        connection.execute(insert(ISSUED_CERTIFICATES), row)
    with database.reading() as connection:
        stored = connection.execute(select(ISSUED_CERTIFICATES)).one()
    assert stored.not_before == datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    assert stored.not_before.utcoffset() == timedelta(0)
    assert stored.issued_at.tzinfo is not None
    with database.reading_connection() as connection:  # compared in SQL against an instant in UTC
        later = connection.execute(select(ISSUED_CERTIFICATES.c.serial).where(
            ISSUED_CERTIFICATES.c.not_before < datetime(2026, 12, 1, 22, 31, tzinfo=UTC))).all()
    assert [r.serial for r in later] == ["abc1"]


def test_a_naive_moment_is_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive"), database.transaction() as connection:
        naive = datetime(2026, 12, 1, 12, 0)
        connection.execute(insert(DNS_TXT_RECORDS).values(name="x", value="y", created_at=naive))
