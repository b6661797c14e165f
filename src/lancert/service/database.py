"""The service's SQL connection: SQLite (WAL) in the data directory by default, PostgreSQL for several
instances; Alembic migrations run programmatically at every start, from the scripts inside the package.

Concurrency is the database's job, never a process's: on SQLite every transaction begins with
``BEGIN IMMEDIATE`` (one writer at a time, waiting instead of failing on a lock upgrade); on PostgreSQL
work that must happen once (migrations, making the CA) takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lancert.errors import LancertError


class DatabaseSettings(Protocol):
    """What :func:`open_database` reads of the service's settings (``ServiceConfig`` has both). A protocol,
    not an import: the settings module imports this one (for :func:`default_url`), and two modules that
    import each other are a circle the import contract (pyproject.toml) refuses."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def db_url(self) -> str: ...


MIGRATIONS = Path(__file__).parent / "migrations"
DB_FILE = "service.db"

# Keys of pg_advisory_xact_lock: any constant unique to lancert; one per thing that must happen once.
LOCK_MIGRATIONS = 0x6C616E01
LOCK_SERVICE_STATE = 0x6C616E02
READ_ONLY = "lancert_read_only"


class DriverStatement:
    """A Core statement compiled once per dialect and run with ``exec_driver_sql``: for the few
    statements every ACME request runs (its nonce's INSERT, its account's SELECT).

    ``Connection.execute`` spends more on its own bookkeeping than SQLite on the statement: the cache
    key walk, the compiled-cache lookup, bind and result processing cost ~80 µs per INSERT against
    ~30 µs through ``exec_driver_sql`` (same transaction, same statement text; measured on the 2-core
    bench machine). Errors stay SQLAlchemy's (``OperationalError`` is what the ports answer 503 for),
    and the text is SQLAlchemy's own compilation for the engine's dialect (``?`` for SQLite,
    ``%(name)s`` for psycopg). Only for statements whose parameters and result columns are strings
    and integers: no type processing happens (a ``UTCDateTime`` column would come back as stored).
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def __call__(self, connection: Connection, params: dict[str, Any]) -> CursorResult[Any]:
        dialect = connection.dialect
        key = f"{dialect.name}+{dialect.driver}"
        compiled = self._compiled.get(key)
        if compiled is None:
            done = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            order = tuple(done.positiontup or ()) if done.positional else None
            compiled = self._compiled[key] = (str(done), order)
        sql, order = compiled
        if order is None:
            return connection.exec_driver_sql(sql, params)
        return connection.exec_driver_sql(sql, tuple(params[name] for name in order))


class DatabaseError(LancertError):
    """The database cannot be opened or migrated; the message names the URL without its password."""


@functools.cache
def migrations_fingerprint() -> int:
    """A positive 31-bit digest of the migration scripts (SQLite's ``user_version`` is a signed int32)."""
    digest = hashlib.sha256()
    for path in sorted([MIGRATIONS / "env.py", *(MIGRATIONS / "versions").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return int.from_bytes(digest.digest()[:4], "big") & 0x7FFFFFFF or 1


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_FILE}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN IMMEDIATE instead of pysqlite's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit is appended to the WAL without an fsync, the WAL is fsynced at each
    # checkpoint. The database stays consistent after a crash or power loss (no half-written transaction,
    # the UNIQUE serial holds); what a power loss (not a process crash) can lose is the last commits
    # since the checkpoint. Those are issued-certificate records of certificates whose boxes then simply
    # ask again; registry changes are made by an operator who sees the command finish.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Readers in WAL mode see a snapshot and never block the writer: only writers need IMMEDIATE.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """An engine plus a session factory; ``Database(url).migrate()`` before use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine
        try:
            # Pre-ping (a SELECT 1 on every pool checkout) guards against a PostgreSQL server that dropped
            # idle connections; a SQLite file has no server, so there it would only cost a round per
            # transaction.
            self.engine = create_engine(url, pool_pre_ping=make_url(url).get_backend_name() != "sqlite")
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(f"cannot use database URL {self.safe_url}: {exc}") from None
        if self.is_sqlite:
            path = self.engine.url.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # The database holds the CA's signing key: private from its creation.
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        # SQLite has one writer at a time, and a BEGIN IMMEDIATE that finds the lock taken sleeps in
        # SQLite's busy handler (1, 2, 5 ... up to 100 ms between tries, without a queue): 16 ACME clients
        # measured a 1.4 s p50 that way, and 4 native clients spent 5% of the service's samples in those
        # sleeps. Threads of this process queue on this lock instead, handed over at once (re-entrant, so
        # a holder may open its write transaction inside it); other processes still meet the busy
        # handler. PostgreSQL needs none.
        self.writer: AbstractContextManager[Any] = threading.RLock() if self.is_sqlite else nullcontext()
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def safe_url(self) -> str:
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            return "<unparsable URL>"

    def advisory_lock(self, session: Session, key: int) -> None:
        """Serialize with other instances until the session's transaction ends (PostgreSQL only;
        SQLite transactions are already exclusive through BEGIN IMMEDIATE)."""
        if self.is_postgresql:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed as a whole on success, rolled back entirely on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: on SQLite a deferred transaction, so readers run beside the writer."""
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def writing_connection(self) -> Iterator[Connection]:
        """Like :meth:`transaction`, on a Core connection: for the per-request path, where the ORM's
        session bookkeeping cost more than the SQL itself (prebuilt statements, no unit of work). Queued
        on :attr:`writer` first."""
        with self.writer, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading_connection(self) -> Iterator[Connection]:
        """Like :meth:`reading`, on a Core connection (see :meth:`writing_connection`)."""
        with self._read_engine.begin() as connection:
            yield connection

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several instances start at once.

        On SQLite, a schema that this exact set of migration scripts already brought up to date is
        recognised without Alembic: importing Alembic (with Mako) took longer than all the rest of a
        ``service db add``. The scripts' fingerprint goes into SQLite's ``user_version`` header field in
        the transaction of the upgrade; any change of the scripts (a new revision) changes it, so
        Alembic runs again.
        """
        if self.is_sqlite and self._migrated_by_these_scripts():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.connect() as connection:
                config.attributes["connection"] = connection
                config.attributes["lock_key"] = LOCK_MIGRATIONS if self.is_postgresql else None
                command.upgrade(config, "head")
                if self.is_sqlite:
                    connection.exec_driver_sql(f"PRAGMA user_version = {migrations_fingerprint()}")
                connection.commit()
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
            raise DatabaseError(f"cannot open database {self.safe_url}: {reason}") from None

    def _migrated_by_these_scripts(self) -> bool:
        try:
            with self._read_engine.connect() as connection:
                stamp = connection.exec_driver_sql("PRAGMA user_version").scalar()
        except OperationalError:
            return False  # let the migration say what is wrong with the file
        return stamp == migrations_fingerprint()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(config: DatabaseSettings) -> Database:
    """The service's database, migrated to the newest schema (``service run`` and the registry and
    root commands). Here, not beside the server, so ``service db add`` does not import FastAPI."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(config.db_url)
    database.migrate()
    return database
