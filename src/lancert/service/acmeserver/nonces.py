"""Anti-replay nonces (RFC 8555 section 6.5): minted without touching the database, used once.

A nonce is ``base64url(minted time | 12 random bytes | HMAC-SHA256 truncated to 16 bytes)`` under a
secret every instance shares (``service_state``), so any instance accepts a nonce another one minted
and minting costs no write. Using one inserts it into ``acme_used_nonces``, whose primary key makes a
second use fail, on SQLite as on PostgreSQL and across instances. Nonces older than
:data:`NONCE_LIFETIME` are refused by their embedded time, which is what lets old rows be pruned.

Only a request whose signature verifies writes its nonce's row: a forged one would otherwise buy a
database write per request for free (a fuzzer made 2,686 rows in 10 s). A nonce seen in a request that
was refused before that point is kept refused in this process's memory instead, the last
:data:`REFUSED_KEPT` of them (at 36 bytes each, under 1 MiB).
"""

from __future__ import annotations

import base64
import hmac
import os
import struct
import threading
import time
from collections import OrderedDict

from sqlalchemy import Connection, delete, text

from lancert.service.acmeserver.models import ACME_USED_NONCES
from lancert.service.database import DriverStatement

NONCE_LIFETIME = 3600  # seconds: clients fetch a nonce right before using it
_PRUNE_EVERY = 500  # uses between two prunes of expired rows
# ON CONFLICT DO NOTHING (SQLite 3.24+, PostgreSQL 9.5+): a replay inserts no row, and the request's
# transaction stays usable on PostgreSQL, where a failed INSERT would abort it.
_INSERT = DriverStatement(text(
    "INSERT INTO acme_used_nonces (nonce, minted) VALUES (:nonce, :minted) ON CONFLICT DO NOTHING"))
_PRUNE = delete(ACME_USED_NONCES)
_RAW_LENGTH = 8 + 12 + 16
REFUSED_KEPT = 16384


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class NonceBook:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._uses = 0
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._refused_lock = threading.Lock()

    def _mac(self, body: bytes) -> bytes:
        # hmac.digest: the one-shot C function (OpenSSL's HMAC); hmac.new builds a Python HMAC object
        # with two hash copies per call. Same MAC, a third of the time; every request mints one.
        return hmac.digest(self._secret, body, "sha256")[:16]

    def mint(self) -> str:
        # os.urandom is what secrets.token_bytes calls, through random.SystemRandom's layers.
        body = struct.pack(">Q", int(time.time())) + os.urandom(12)
        return _b64(body + self._mac(body))

    def _genuine(self, raw: bytes) -> bool:
        """Minted here (the MAC holds) and fresh (its embedded time), whether used or not."""
        if len(raw) != _RAW_LENGTH:
            return False
        body, tag = raw[:-16], raw[-16:]
        if not hmac.compare_digest(tag, self._mac(body)):
            return False
        minted = struct.unpack(">Q", body[:8])[0]
        now = int(time.time())
        return now - NONCE_LIFETIME <= minted <= now + 5

    def refuse(self, raw: bytes | None) -> None:
        """Never accept ``raw`` again: it came with a request refused before its signature was checked.
        Only genuine nonces are kept: pushing one out takes REFUSED_KEPT fresh ones."""
        if raw is None or not self._genuine(raw):
            return
        with self._refused_lock:
            self._refused[raw] = None
            while len(self._refused) > REFUSED_KEPT:
                self._refused.popitem(last=False)

    def use(self, c: Connection, raw: bytes) -> bool:
        """True if ``raw`` (the decoded ``nonce`` header) was minted here, is fresh and never used; the
        use is recorded in the caller's transaction (the request's, committed even when it fails)."""
        if not self._genuine(raw) or raw in self._refused:
            return False
        minted = struct.unpack(">Q", raw[:8])[0]
        now = int(time.time())
        self._uses += 1
        if self._uses % _PRUNE_EVERY == 0:
            c.execute(_PRUNE.where(ACME_USED_NONCES.c.minted < now - NONCE_LIFETIME))
        return _INSERT(c, {"nonce": _b64(raw), "minted": minted}).rowcount == 1
