"""The DNS workers' reader of the TXT table: on a SQLite file it reads with ``sqlite3`` alone (a worker
then starts without SQLAlchemy), and it must read exactly what the service wrote, as the SQLAlchemy
reader does."""

from __future__ import annotations

import functools
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lancert.service.database import Database
from lancert.service.dnsrecords import add_txt_record, remove_txt_records, txt_source
from lancert.service.txtreader import open_txt_reader, read_txt_records, sqlite_file


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'service.db'}")
    db.migrate()
    return db


def test_the_sqlite_reader_reads_what_the_service_wrote_in_insertion_order(database: Database) -> None:
    add_txt_record(database, "_acme-challenge.ABC.iot.example.", "first")
    add_txt_record(database, "_acme-challenge.abc.iot.example", "second")
    add_txt_record(database, "_acme-challenge.xyz.iot.example", "other")
    reader = txt_source(database.url)()  # what a worker does with the spec it was given
    assert isinstance(reader, functools.partial) and reader.func is not read_txt_records  # sqlite3
    expected = {"_acme-challenge.abc.iot.example": ["first", "second"],
                "_acme-challenge.xyz.iot.example": ["other"]}
    assert reader() == expected == read_txt_records(database)
    remove_txt_records(database, "_acme-challenge.abc.iot.example")
    assert reader() == {"_acme-challenge.xyz.iot.example": ["other"]} == read_txt_records(database)


def test_the_sqlite_reader_sees_records_committed_while_a_writer_holds_the_database(
    database: Database,
) -> None:
    """WAL: a reader sees the last commit and does not wait for a writer's open transaction."""
    add_txt_record(database, "_acme-challenge.abc.iot.example", "committed")
    reader = open_txt_reader(database.url)
    path = sqlite_file(database.url)
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO dns_txt_records (name, value, created_at) VALUES ('x.iot.example', "
                       "'uncommitted', '2026-01-01 00:00:00')")
        assert reader() == {"_acme-challenge.abc.iot.example": ["committed"]}
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_missing_database_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    reader = open_txt_reader(f"sqlite:///{missing}")
    with pytest.raises(sqlite3.Error):
        reader()
    assert not missing.exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///x.db?timeout=5",
                                 "sqlite+pysqlite:///x.db", "postgresql://u@localhost/db"])
def test_other_urls_go_through_sqlalchemy(url: str) -> None:
    assert sqlite_file(url) is None


def test_an_absolute_and_a_relative_sqlite_path_are_read_as_sqlalchemy_reads_them() -> None:
    assert sqlite_file("sqlite:////var/lib/lancert/service.db") == "/var/lib/lancert/service.db"
    assert sqlite_file("sqlite:///service.db") == "service.db"


@pytest.mark.slow  # a subprocess: a fresh interpreter, as a spawned worker is
def test_a_worker_on_a_sqlite_file_reads_without_importing_sqlalchemy(database: Database) -> None:
    add_txt_record(database, "_acme-challenge.abc.iot.example", "v")
    code = ("import pickle, sys; source = pickle.loads(sys.stdin.buffer.read()); "
            "print(source()(), 'sqlalchemy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(txt_source(database.url)),
                            capture_output=True, check=True)
    assert result.stdout.decode().strip() == "{'_acme-challenge.abc.iot.example': ['v']} False"
