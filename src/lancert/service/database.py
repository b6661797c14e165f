"""The service's SQL connection: SQLite (WAL) in the data directory by default, PostgreSQL for several
instances; Alembic migrations run programmatically at every start, from the scripts inside the package.

Concurrency is the database's job, never a process's: on SQLite every transaction begins with
``BEGIN IMMEDIATE`` (one writer at a time, waiting instead of failing on a lock upgrade); on PostgreSQL
work that must happen once (migrations, making the CA) takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Dialect, Engine, Executable, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import QueuePool

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


class DriverResult:
    """What a :class:`DriverStatement` gives back: the rows (attribute access by column name, values
    through their column types as ``Connection.execute`` would give them) and the row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def all(self) -> list[Any]:
        return list(self.rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # positional parameter names (``?``), None for named ones
    names: tuple[str, ...]  # every parameter
    fixed: dict[str, Any]  # values compiled into the statement (``status == "ready"``)
    binds: dict[str, Callable[[Any], Any]]  # parameter -> the column type's bind processor
    row: Any  # a namedtuple class over the result columns, None without any
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, its result processor)


class DriverStatement:
    """A Core statement compiled once per dialect and run on the driver's own cursor: for the
    statements every ACME request and every native certificate runs (nonces, accounts, orders, the
    certificate records, the registry row).

    ``Connection.execute`` spends far more on its own bookkeeping than SQLite on the statement: the cache
    key walk, the compiled-cache lookup, the execution context, bind and result processing and the
    result object cost ~40 µs per SELECT by primary key against ~3 µs for the same statement on the
    ``sqlite3`` cursor (same transaction; measured on the 2-core bench machine), and they were a fifth
    of the ACME server's CPU under load. Here the text is SQLAlchemy's own compilation for the
    connection's dialect (``?`` for SQLite, ``%(name)s`` for psycopg), values go in and come out through
    the columns' own type processors (a ``UTCDateTime`` is written and read as through ``execute``),
    and a driver error is raised as SQLAlchemy's exception class for it (``OperationalError`` is what
    the ports answer 503 for, ``IntegrityError`` what a lost race is told by), with a lost connection
    invalidated as ``execute`` would. The statement runs in the connection's transaction (begun here
    if none is, as ``execute`` would). A statement whose columns have Python-side defaults must be
    given every column (``column_keys``): nothing computes a default here, so compiling one that
    would need it is refused.
    """

    def __init__(self, statement: Executable, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        done: Any = self.statement.compile(dialect=dialect, column_keys=self.column_keys)  # type: ignore[attr-defined]
        if getattr(done, "insert_prefetch", None) or getattr(done, "update_prefetch", None):
            raise ValueError(f"{self.statement} needs Python-side column defaults: give every column")
        fixed, binds = {}, {}
        for name, bind in done.binds.items():
            if not bind.required:
                fixed[name] = bind.effective_value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binds[name] = processor
        row, results = None, ()
        columns = getattr(self.statement, "selected_columns", None)
        if columns is not None and not getattr(self.statement, "is_dml", False):
            names = [column.key for column in columns]
            row = namedtuple("Row", names, rename=True)  # type: ignore[misc]
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                          for column in columns]
            results = tuple((i, f) for i, f in enumerate(processors) if f is not None)
        order = tuple(done.positiontup or ()) if done.positional else None
        return _Compiled(str(done), order, tuple(done.binds), fixed, binds, row, results)

    def __call__(self, connection: Connection, params: dict[str, Any] | None = None) -> DriverResult:
        dialect = connection.dialect
        key = f"{dialect.name}+{dialect.driver}"
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect)
        values = params or {}
        if compiled.fixed or compiled.binds:
            values = {**compiled.fixed, **values}
            for name, processor in compiled.binds.items():
                if name in values:
                    values[name] = processor(values[name])
        try:
            arguments: Any = (tuple(values[n] for n in compiled.order) if compiled.order is not None
                              else {n: values[n] for n in compiled.names})
        except KeyError as missing:
            raise ValueError(f"missing parameter {missing} for {compiled.sql!r}") from None
        if not connection.in_transaction():
            connection.begin()
        rowcount, fetched = driver_execute(connection, compiled.sql, arguments)
        if compiled.row is None:
            return DriverResult([], rowcount)
        make = compiled.row._make
        if compiled.results:
            rows = []
            for raw in fetched:
                row = list(raw)
                for i, processor in compiled.results:
                    row[i] = processor(row[i])
                rows.append(make(row))
            return DriverResult(rows, rowcount)
        return DriverResult([make(r) for r in fetched], rowcount)


def driver_execute(connection: Connection, sql: str, arguments: Any = ()) -> tuple[int, list[Any]]:
    """``sql`` on the connection's driver cursor, in its current transaction: the row count and the
    rows fetched (none for a statement without a result). A driver error is raised as SQLAlchemy's
    class for it, and a lost connection is invalidated, as ``Connection.execute`` does."""
    dbapi_connection = connection.connection.dbapi_connection
    dialect = connection.dialect
    error_class = dialect.loaded_dbapi.Error
    cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, arguments)
        rows = cursor.fetchall() if cursor.description is not None else []
        return cursor.rowcount, rows
    except error_class as error:
        if dialect.is_disconnect(error, dbapi_connection, cursor):  # type: ignore[arg-type]
            connection.invalidate(error)
        raise DBAPIError.instance(sql, arguments, error, error_class, dialect=dialect) from error
    finally:
        cursor.close()


class _NowConnection:
    """What :class:`DriverStatement` and :func:`driver_execute` use of a ``Connection``, over a pool's
    DBAPI connection whose transactions :meth:`Database.now_transaction` begins and ends itself with
    the driver's BEGIN and COMMIT: SQLAlchemy's ``Connection.begin`` and its commit (the transaction
    object, the begin and commit events, the reset bookkeeping) cost more than the two statements,
    5-6% of the service's samples per native certificate under py-spy at 1 client."""

    __slots__ = ("connection", "dialect", "invalidated")

    def __init__(self, dialect: Dialect, connection: Any) -> None:
        self.dialect = dialect
        self.connection = connection  # the pool's proxy: .dbapi_connection, .invalidate()
        self.invalidated = False

    @property
    def dbapi(self) -> Any:
        return self.connection.dbapi_connection

    def in_transaction(self) -> bool:
        return True  # always inside the transaction now_transaction began

    def invalidate(self, _error: BaseException | None = None) -> None:
        """A lost connection (driver_execute's disconnect check): dropped by the next transaction."""
        self.invalidated = True


class DatabaseError(LancertError):
    """The database cannot be opened or migrated; the message names the URL without its password."""


class WouldWait(Exception):
    """A transaction asked for *now* (``now=True``) would have had to wait, and was not begun or was
    rolled back: SQLite's write lock or a read lock is taken (another process, SQLite's busy handler
    would sleep), this process's :attr:`Database.writer` is held by another thread, or the caller
    would need a slow step (an scrypt). Nothing it did is kept: the caller runs the whole request again
    where waiting is allowed (a worker thread)."""


def _is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's SQLITE_BUSY (any extended code): a lock taken, nothing else wrong."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == 5  # SQLITE_BUSY


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
    # On the driver's cursor (driver_execute): exec_driver_sql's execution context cost 4 times the
    # statement, and every request begins a transaction.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    driver_execute(conn, "BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """An engine and its transactions; ``Database(url).migrate()`` before use."""

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
        # SQLite: the connection write transactions run on, kept between them (see writing_connection);
        # only where the pool already hands connections from thread to thread (a file: QueuePool with
        # check_same_thread off), not a :memory: database's connection per thread.
        self._keeps_writer = self.is_sqlite and isinstance(self.engine.pool, QueuePool)
        self._kept_writer: Connection | None = None
        # SQLite, the same way: read transactions on connections kept between them (at most
        # KEPT_READERS idle ones; see reading_connection).
        self._kept_readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        # SQLite: the connections of transactions asked for now (see now_transaction), one per kind,
        # used by one thread at a time (the event loop's); and the checkpoints their commits leave.
        self._now_connections: dict[bool, _NowConnection] = {}
        self._now_locks = {True: threading.Lock(), False: threading.Lock()}  # a second thread: WouldWait
        self._now_commits = 0
        self._checkpointer: Any = None
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})

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

    def advisory_lock(self, connection: Connection, key: int) -> None:
        """Serialize with other instances until the connection's transaction ends (PostgreSQL only;
        SQLite transactions are already exclusive through BEGIN IMMEDIATE)."""
        if self.is_postgresql:
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: committed as a whole on success, rolled back entirely on any exception."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite a deferred one, so readers run beside the writer."""
        with self._read_engine.begin() as connection:
            yield connection

    @contextmanager
    def writing_connection(self) -> Iterator[Connection]:
        """Like :meth:`transaction`, for the per-request path: queued on :attr:`writer` first, and on
        SQLite on a kept connection.

        On SQLite, where :attr:`writer` lets one thread at a time in, the transactions run on one kept
        connection instead of a pool checkout each: the checkout, the ``Connection`` set-up and the
        check-in (with its reset) were about half of a native certificate's transaction cost under 4
        clients (``Engine.begin`` 13.8% of the service's samples). A nested call (the same thread, in a
        write already) takes a pool connection as before; a transaction that ends in an exception drops
        the kept connection (closed, so a half-failed rollback never reaches the next request)."""
        with self.writer:
            kept = self._kept_writer if self._keeps_writer else None
            if self._keeps_writer and (kept is None or kept.closed or kept.invalidated):
                kept = self._kept_writer = self.engine.connect()
            if kept is None or kept.in_transaction():
                with self.engine.begin() as connection:
                    yield connection
                return
            try:
                with kept.begin():
                    yield kept
            except BaseException:
                self._kept_writer = None
                with contextlib.suppress(Exception):
                    kept.close()
                raise

    # Idle read connections kept on SQLite: what a burst of concurrent requests reads on at once is
    # taken from the pool (and kept on return while fewer than this are idle), so the pool's other
    # users (transactions, the writer's nested ones) still find connections in it.
    KEPT_READERS = 4

    @contextmanager
    def reading_connection(self) -> Iterator[Connection]:
        """Like :meth:`reading`, on a Core connection (see :meth:`writing_connection`).

        On SQLite the transaction runs on a connection kept from an earlier one when one is idle,
        instead of a pool checkout, ``Connection`` set-up and check-in with its reset: that was half of
        an empty read transaction's 32 µs, and every native certificate and ACME request reads in one
        (micro-benchmark on the 2-core bench machine). Each transaction still begins and ends (BEGIN,
        then COMMIT: a fresh snapshot each time). One that ends in an exception closes its connection
        instead of keeping it, as :meth:`writing_connection` does."""
        if not self._keeps_writer:
            with self._read_engine.begin() as connection:
                yield connection
            return
        with self._readers_lock:
            kept = self._kept_readers.pop() if self._kept_readers else None
        if kept is None or kept.closed or kept.invalidated:
            kept = self._read_engine.connect()
        try:
            with kept.begin():
                yield kept
        except BaseException:
            with contextlib.suppress(Exception):
                kept.close()
            raise
        with self._readers_lock:
            if len(self._kept_readers) < self.KEPT_READERS:
                self._kept_readers.append(kept)
                return
        kept.close()

    # Commits on the now-writer between two checkpoints (its own automatic checkpoint is off): SQLite's
    # default checkpoints at 1,000 WAL pages, and a native certificate writes 3-4.
    NOW_CHECKPOINT_COMMITS = 250

    @contextmanager
    def now_transaction(self, *, write: bool) -> Iterator[Any]:
        """A transaction begun at once or not at all, for a caller that must not wait (the event loop:
        a wait there stops every port of the process): :class:`WouldWait` instead of waiting, and the
        same transaction as :meth:`reading_connection` / :meth:`writing_connection` otherwise, for
        :class:`DriverStatement` statements (what it yields is no ``Connection``: see
        :class:`_NowConnection`).

        SQLite only (a file, where the kept connections are); one connection per kind, so a second
        thread asking while another has it gets :class:`WouldWait` too. Its connections have SQLite's
        busy timeout at 0, so a lock another process holds is SQLITE_BUSY at once instead of up to 30 s
        of the busy handler's sleeps; a busy error anywhere in the transaction rolls it back and becomes
        :class:`WouldWait` (nothing is kept, the caller does it all again in a thread). A write also
        needs :attr:`writer` free now. The writer's automatic checkpoint is off: a checkpoint syncs the
        WAL and the database file, which may take long on a slow disk; every
        :data:`NOW_CHECKPOINT_COMMITS` commits one (PASSIVE, which waits for nobody) runs in a thread
        of its own instead."""
        if not self._keeps_writer:
            raise WouldWait("no transaction at once on this database")
        own = self._now_locks[write]
        if not own.acquire(blocking=False):
            raise WouldWait("another thread has this connection")
        if write and not self.writer.acquire(blocking=False):
            own.release()
            raise WouldWait("this process's writer is busy")
        try:
            connection = self._now_connection(write)
            try:
                driver_execute(connection, "BEGIN IMMEDIATE" if write else "BEGIN")
                yield connection
                driver_execute(connection, "COMMIT")
            except BaseException as exc:
                # Rolled back (or dropped when that fails), so nothing of it is ever kept.
                try:
                    if connection.dbapi.in_transaction:
                        driver_execute(connection, "ROLLBACK")
                except Exception:
                    self._drop_now_connection(write)
                if isinstance(exc, OperationalError) and _is_busy(exc):
                    raise WouldWait(str(exc.orig)) from None
                if not isinstance(exc, Exception):
                    self._drop_now_connection(write)
                raise
        finally:
            if write:
                self.writer.release()
            own.release()
        if write:
            self._now_commits += 1
            if self._now_commits >= self.NOW_CHECKPOINT_COMMITS:
                self._now_commits = 0
                self._start_checkpoint()

    def _now_connection(self, write: bool) -> _NowConnection:
        connection = self._now_connections.get(write)
        if connection is not None and connection.invalidated:
            self._drop_now_connection(write)
            connection = None
        if connection is None:
            connection = _NowConnection(self.engine.dialect, self.engine.raw_connection())
            driver_execute(connection, "PRAGMA busy_timeout=0")
            if write:
                driver_execute(connection, "PRAGMA wal_autocheckpoint=0")
            self._now_connections[write] = connection
        return connection

    def _drop_now_connection(self, write: bool) -> None:
        """Closed for good, never back to the pool with its busy timeout of 0."""
        connection = self._now_connections.pop(write, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.connection.invalidate()

    def _start_checkpoint(self) -> None:
        if self._checkpointer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="lancert-checkpoint")
        self._checkpointer.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        # A failed checkpoint is tried again by the next one (or by another connection's own).
        with contextlib.suppress(Exception), self.engine.connect() as connection:
            driver_execute(connection, "PRAGMA wal_checkpoint(PASSIVE)")

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
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        with self.writer:
            kept, self._kept_writer = self._kept_writer, None
            if kept is not None:
                kept.close()
            for write in (True, False):
                self._drop_now_connection(write)
        with self._readers_lock:
            readers, self._kept_readers = self._kept_readers, []
        for reader in readers:
            reader.close()
        self.engine.dispose()


# The child of migrate_apart, given the URL on stdin (never in argv, which every user of the machine sees).
_MIGRATE_CHILD = ("import sys; from lancert.service.database import Database; "
                  "Database(sys.stdin.read()).migrate()")


def migrate_apart(config: DatabaseSettings) -> None:
    """Migrate a SQLite database that these scripts have not brought up to date in a child process, so
    a long-running server never imports Alembic: Alembic, Mako and the Pygments plugin Mako loads stay
    resident once imported, 12 MiB of the service's RSS after a first start (VmRSS 101 -> 89 MiB).
    Up to date (every later start) costs one ``PRAGMA user_version`` here and no child. If the child
    fails, the migration runs again in this process, so the error and its message are the ones
    :meth:`Database.migrate` gives; PostgreSQL migrates in this process as before (its check needs
    Alembic anyway)."""
    import subprocess
    import sys

    database = Database(config.db_url)
    try:
        if not database.is_sqlite or database._migrated_by_these_scripts():
            return
    finally:
        database.dispose()
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([sys.executable, "-c", _MIGRATE_CHILD], input=config.db_url, text=True,
                       capture_output=True, timeout=600, check=False)


def open_database(config: DatabaseSettings) -> Database:
    """The service's database, migrated to the newest schema (``service run`` and the registry and
    root commands). Here, not beside the server, so ``service db add`` does not import FastAPI."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(config.db_url)
    database.migrate()
    return database
