"""External Account Binding (RFC 8555 section 7.3.4): the only way to open an ACME account here.

``lancert service acme-eab --uuid U`` makes a key id and an HMAC key bound to one registered database;
an ACME client that presents a binding signed with them gets an account of that database, whose orders
the authority judges by that database's eligibility. Keys are rotatable (make a new one any time, every
one works until revoked) and revocable (``--revoke KID``: no new account with it, and the accounts
it opened are refused from then on, so a leaked pair leaves nothing behind).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import josepy as jose
from sqlalchemy import Connection, insert, select, update

from lancert.errors import LancertError
from lancert.service.acmeserver.jws import parse_document, thumbprint
from lancert.service.acmeserver.models import ACME_EAB_KEYS
from lancert.service.acmeserver.problems import AcmeProblem, malformed, unauthorized
from lancert.service.authority import check_eligible
from lancert.service.database import Database
from lancert.service.errors import NotEligible
from lancert.service.registry import Registry

MAC_ALGORITHMS = ("HS256", "HS384", "HS512")
HMAC_KEY_BYTES = 32  # 256 bits: what HS256 wants (RFC 7518 3.2)


class EabError(LancertError):
    pass


@dataclass(frozen=True)
class EabPair:
    kid: str
    hmac_key: str  # base64url without padding, as certbot, lego, Caddy, uacme and dehydrated read it
    db_uuid: str

    def as_json(self) -> dict[str, str]:
        return {"kid": self.kid, "hmac_key": self.hmac_key, "db_uuid": self.db_uuid}


class EabKeys:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _eligible(self, db_uuid: str) -> None:
        """A pair for a database that may not order would open accounts that can never order: say so."""
        found = Registry(self.database).find(db_uuid)
        if found is None:
            raise EabError(f"database {db_uuid} is not registered; use 'lancert service db add'")
        try:
            check_eligible(found.record)
        except NotEligible as refusal:
            raise EabError(f"database {db_uuid} may not order certificates: {refusal.message} "
                           "('lancert service db set' changes it)") from None

    def create(self, db_uuid: str) -> EabPair:
        """A new pair for an eligible database."""
        self._eligible(db_uuid)
        pair = EabPair(
            f"eab_{secrets.token_urlsafe(15)}",
            jose.b64encode(secrets.token_bytes(HMAC_KEY_BYTES)).decode(),
            db_uuid,
        )
        with self.database.writing_connection() as connection:
            connection.execute(
                insert(ACME_EAB_KEYS),
                {"kid": pair.kid, "db_uuid": db_uuid, "hmac_key": pair.hmac_key,
                 "created_at": datetime.now(UTC), "revoked_at": None},
            )
        return pair

    def bind_key(self, db_uuid: str, key_pem: bytes) -> tuple[str, str, bool]:
        """Give an existing ACME account key an account of ``db_uuid`` in one step, for clients that
        cannot send an External Account Binding (acme-tiny, acmetool, simp_le): their newAccount then
        finds the account by its key (RFC 8555 7.3.1) and needs no binding. ``key_pem`` is the account's
        private or public key (PEM); only its public part is kept. Answers (account id, the key id
        that revokes it with ``--revoke``, created). The account's binding is a pair made for it whose
        HMAC key is never shown, so nobody opens another account with it."""
        from lancert.service.acmeserver.store import AcmeStore

        try:
            key = jose.JWK.load(key_pem).public_key()
        except (ValueError, TypeError, jose.errors.Error) as exc:
            raise EabError(f"--bind-key: not a PEM key ({exc})") from None
        store = AcmeStore()
        with self.database.reading_connection() as connection:
            existing = store.account_by_thumbprint(connection, thumbprint(key))
        if existing is not None:
            if existing.db_uuid != db_uuid:
                raise EabError(f"this key already has an account of another database ({existing.db_uuid})")
            return existing.id, existing.eab_kid, False
        pair = self.create(db_uuid)
        with self.database.writing_connection() as connection:
            account = store.create_account(connection, key, thumbprint(key), [], db_uuid, pair.kid)
            if account is None:  # bound concurrently
                account = store.account_by_thumbprint(connection, thumbprint(key))
                assert account is not None
                return account.id, account.eab_kid, False
        return account.id, pair.kid, True

    def revoke(self, kid: str, db_uuid: str) -> None:
        """Revoke ``kid`` of database ``db_uuid`` (naming the database guards against a typo's damage)."""
        with self.database.writing_connection() as connection:
            keys = ACME_EAB_KEYS.c
            row = connection.execute(select(keys.db_uuid).where(keys.kid == kid)).first()
            if row is None or row.db_uuid != db_uuid:
                raise EabError(f"database {db_uuid} has no EAB key {kid!r}")
            connection.execute(
                update(ACME_EAB_KEYS)
                .where(ACME_EAB_KEYS.c.kid == kid, ACME_EAB_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )

    def verify(
        self, c: Connection, binding: Any, account_key: jose.JWK, new_account_url: str
    ) -> tuple[str, str]:
        """The (kid, db_uuid) a binding proves, or the problem RFC 8555 7.3.4 prescribes."""
        try:
            signed = parse_document(binding, "externalAccountBinding", dict.fromkeys(MAC_ALGORITHMS))
        except AcmeProblem as problem:
            if problem.code != "badSignatureAlgorithm":
                raise
            raise malformed(
                f"externalAccountBinding must be MACed with one of {', '.join(MAC_ALGORITHMS)}") from None
        header = signed.header
        if header.nonce is not None or header.jwk is not None or not header.kid:
            raise malformed("externalAccountBinding's header must have kid and no nonce or jwk")
        if header.url != new_account_url:
            raise malformed("externalAccountBinding's url must be the newAccount URL")
        row = c.execute(select(ACME_EAB_KEYS).where(ACME_EAB_KEYS.c.kid == header.kid)).first()
        if row is None:
            raise unauthorized("unknown external account key id")
        if row.revoked_at is not None:
            raise unauthorized("this external account key was revoked; ask for a new one")
        if not signed.signed_by(jose.JWKOct(key=jose.b64decode(row.hmac_key))):
            raise malformed("externalAccountBinding's MAC does not verify")
        payload = signed.payload_json()
        try:
            bound = jose.JWK.from_json(payload)
        except Exception:  # josepy's decoders raise more than DeserializationError on odd members
            raise malformed("externalAccountBinding's payload is not a JWK") from None
        if thumbprint(bound) != thumbprint(account_key.public_key()):
            raise malformed("externalAccountBinding binds another key than the account's")
        return row.kid, row.db_uuid


def eab_problem_required() -> AcmeProblem:
    return AcmeProblem(
        "externalAccountRequired",
        "this CA needs an external account binding: get a key id and HMAC key with "
        "'lancert service acme-eab --uuid <database>'; a client that sends no binding registers once its "
        "account key is bound: 'lancert service acme-eab --uuid <database> --bind-key <account key PEM>'",
    )
