"""Slowing down credential guessing: failed credentials counted per source IP and per db_uuid.

Counters live in SQL (table ``credential_failures``), not in process memory: several instances behind
one load balancer must slow a guesser down together. Fixed windows keep it one row per key and window;
a burst of at most twice the limit across a window boundary is accepted for that simplicity.

A failure counts once per distinct guess (database and code) in a window: the newest Odoo boxes retry a
refused call 5 times at once, and several boxes of one shop send the same stale code, so counting every
request would let a shop's own boxes lock its database out. A guesser still pays for every new code.
The guess is kept as a keyed digest (``scope = "guess"`` rows), never the code itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from lancert.service.database import Database, DriverStatement
from lancert.service.errors import RateLimited
from lancert.service.models import CREDENTIAL_FAILURES

# Both counters in one query, built once: this runs before every credential check, successful or not.
# Through the driver (DriverStatement): no execution context per request.
_COUNTS = DriverStatement(select(CREDENTIAL_FAILURES.c.scope, CREDENTIAL_FAILURES.c.count).where(
    CREDENTIAL_FAILURES.c.window_start == bindparam("window"),
    or_(
        and_(CREDENTIAL_FAILURES.c.scope == "ip", CREDENTIAL_FAILURES.c.subject == bindparam("ip")),
        and_(CREDENTIAL_FAILURES.c.scope == "db", CREDENTIAL_FAILURES.c.subject == bindparam("db")),
    ),
))


@dataclass(frozen=True)
class RateLimits:
    failures_per_ip: int = 20
    failures_per_database: int = 10
    window_seconds: int = 300


class FailedCredentialLimiter:
    def __init__(self, database: Database, limits: RateLimits) -> None:
        self.database = database
        self.limits = limits

    def _window(self, now: float) -> int:
        return int(now) // self.limits.window_seconds * self.limits.window_seconds

    def _subjects(self, ip: str, db_uuid: str) -> list[tuple[str, str, int]]:
        return [
            ("ip", ip[:128], self.limits.failures_per_ip),
            ("db", db_uuid[:128], self.limits.failures_per_database),
        ]

    def check(self, ip: str, db_uuid: str, *, connection: Connection | None = None) -> None:
        """Raise :class:`RateLimited` if this source or database used up its failures for the window.

        ``connection``: read inside the caller's transaction (the authority reads the counters and the
        registry row in one snapshot); otherwise in a read transaction of its own.
        """
        now = time.time()
        window = self._window(now)
        subjects = self._subjects(ip, db_uuid)
        params = {"window": window, "ip": subjects[0][1], "db": subjects[1][1]}
        if connection is None:
            with self.database.reading_connection() as own:
                rows = _COUNTS(own, params).all()
        else:
            rows = _COUNTS(connection, params).all()
        counts = {scope: count for scope, count in rows}
        for scope, _subject, limit in subjects:
            if counts.get(scope, 0) >= limit:
                retry_after = max(1, int(window + self.limits.window_seconds - now) + 1)
                what = "this address" if scope == "ip" else "this database"
                raise RateLimited(
                    f"too many failed credentials for {what}; retry in {retry_after} s",
                    retry_after=retry_after,
                )

    def record_failure(self, ip: str, db_uuid: str, guess: str | None = None) -> None:
        """Count a failed credential for ``ip`` and ``db_uuid``, unless ``guess`` (a digest of the
        database and the code tried) was already counted in this window."""
        window = self._window(time.time())
        for attempt in range(3):
            try:
                self._increment(window, ip, db_uuid, guess)
                return
            except IntegrityError:
                # Another instance inserted the same counter row first: now the UPDATE will find it.
                if attempt == 2:
                    raise

    def _increment(self, window: int, ip: str, db_uuid: str, guess: str | None) -> None:
        failures = CREDENTIAL_FAILURES
        counted = failures.c
        with self.database.transaction() as connection:
            if guess is not None:
                seen = (counted.scope == "guess", counted.subject == guess[:128],
                        counted.window_start == window)
                if connection.execute(select(counted.count).where(*seen)).first():
                    return
                # A concurrent first of the same guess makes this INSERT fail: the retry finds it.
                connection.execute(
                    insert(failures).values(scope="guess", subject=guess[:128], window_start=window, count=1)
                )
            for scope, subject, _limit in self._subjects(ip, db_uuid):
                where = counted.scope == scope, counted.subject == subject, counted.window_start == window
                counting = update(failures).where(*where).values(count=counted.count + 1)
                if connection.execute(counting).rowcount == 0:
                    connection.execute(
                        insert(failures).values(scope=scope, subject=subject, window_start=window, count=1)
                    )
            connection.execute(delete(failures).where(counted.window_start < window))
