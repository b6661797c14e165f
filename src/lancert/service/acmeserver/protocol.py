"""The ACME server's behaviour (RFC 8555, RFC 9773 renewal information), apart from HTTP.

:class:`AcmeServer` takes what a request is (endpoint, URL, body) and gives a :class:`Reply` or raises
:class:`~.problems.AcmeProblem`; :mod:`.app` only moves bytes. Decisions are
not made here: eligibility and the names a database may have come from the service's
:class:`~lancert.service.authority.Authority` (the same rules as for boxes); certificates come from the
service's one issuance step (:meth:`~lancert.service.provisioning.Provisioner.issue`: order desk,
issuer, record, log line), as for boxes.

Finalize, in two parts: the request's transaction checks the CSR and the grant and moves the order from
``ready`` to ``processing`` (once: the request that wins issues); after it commits, the issuance step
runs in a thread of its own, which completes the order (``valid``, with the certificate, in the
transaction that records it) or fails it (``invalid``, with the problem). The request waits for that
thread at most :data:`FINALIZE_WAIT`, then answers the order as ``processing`` with Retry-After; the
client polls the order, as RFC 8555 7.4 has it. So no write transaction is ever open while an upstream
CA works (with ``--issuer acme``, an order there takes seconds to a minute): SQLite's one writer and the
other requests never wait for it. With the internal CA (no upstream order) the step runs at once in the
request's thread after the commit: it signs in about a millisecond, and a thread per certificate cost
more than that.

Every refusal is logged as the HTTP API's are (:mod:`lancert.service.requestlog`), with the problem
type and the account's database; every certificate by the issuance step.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection

from lancert.pki import InvalidName, PKIError, SubjectNames, csr_names, load_csr, pem
from lancert.pki.names import common_name
from lancert.service import requestlog
from lancert.service.acmeserver import jws, resources
from lancert.service.acmeserver.eab import EabKeys, eab_problem_required
from lancert.service.acmeserver.nonces import NonceBook
from lancert.service.acmeserver.problems import AcmeProblem, malformed, unauthorized
from lancert.service.acmeserver.resources import Urls
from lancert.service.acmeserver.store import Account, AcmeStore, Order, new_id, now
from lancert.service.acmeserver.worker import SerialWorker
from lancert.service.authority import Authority, Grant
from lancert.service.database import Database
from lancert.service.errors import IssuancePending, NameNotAllowed, NotEligible, UpstreamFailed
from lancert.service.issuer import IssuedChain
from lancert.service.provisioning import Provisioner

log = logging.getLogger("lancert.acme")
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
ORDER_LIFETIME = timedelta(days=1)
MAX_IDENTIFIERS = 100
MAX_CONTACTS = 4
SIGNERS_KEPT = 4096  # accounts whose key is remembered (an Account is well under 1 KiB)
# RFC 5280 reason codes a subscriber may give (Let's Encrypt's set): not cACompromise (2), not the
# CRL-only certificateHold (6) and removeFromCRL (8), not aACompromise (10).
REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5, 9})
RENEWAL_INFO_RETRY_AFTER = 6 * 3600  # seconds; RFC 9773 suggests hours
# How long a finalize request waits for its certificate before answering ``processing``: the internal CA
# signs in milliseconds (the client gets a valid order at once); an upstream order takes seconds.
FINALIZE_WAIT = 2.0
# How long the issuance thread of a finalize waits for the order desk: beyond an upstream order's own
# bound (90 s) and a wait behind another order for the same name.
ISSUANCE_DEADLINE = 300.0
PROCESSING_RETRY_AFTER = 2  # seconds, on an order still processing (RFC 8555 7.4)
# Upstream refusals that mean "not now" (the desk's back-off and per-name failure limit, the CA's own
# rate limit): the client gets rateLimited with Retry-After, as from the CA itself.
_NOT_NOW = frozenset({"rateLimited", "backing_off", "too_many_failures"})
_EMAIL = re.compile(r"^[^@\s,?]{1,64}@[A-Za-z0-9.-]{1,253}$")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | str | None = None
    content_type: str = "application/json"
    location: str | None = None
    links: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """One verified request: its payload, its account (when signed with a kid), where it went."""

    request: jws.SignedRequest
    account: Account | None
    urls: Urls
    url: str
    db: Connection  # the request's one transaction
    source_ip: str = "-"

    @property
    def signer(self) -> Account:
        assert self.account is not None
        return self.account


@dataclass(frozen=True)
class AfterCommit:
    """A handler's answer that is made after the request's transaction committed (finalize: issuing)."""

    then: Callable[[], Reply]


Handler = Callable[..., "Reply | AfterCommit"]


class _StaleSigner(Exception):
    """A remembered signer's account changed (key, status): roll the transaction back, read it again."""


class AcmeServer:
    def __init__(
        self,
        database: Database,
        store: AcmeStore,
        eab: EabKeys,
        nonces: NonceBook,
        authority: Authority,
        provisioner: Provisioner,
        *,
        order_lifetime: timedelta = ORDER_LIFETIME,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.meta = dict(meta or {})  # termsOfService, website: the directory's meta when configured
        # The database's queue for its one SQLite writer (Database.writer; PostgreSQL: none).
        self._writer: AbstractContextManager[Any] = database.writer
        # Where the transport runs signed requests (:attr:`worker`): one thread of their own when they all
        # queue on that lock anyway (SQLite, an issuer that signs at once), else the framework's pool.
        self.worker: SerialWorker | None = None
        if database.is_sqlite and not provisioner.issuer.places_orders:
            self.worker = SerialWorker("lancert-acme")
        self.store = store
        self.eab = eab
        self.nonces = nonces
        self.authority = authority
        self.provisioner = provisioner
        self.order_lifetime = order_lifetime
        self._signers: OrderedDict[str, Account] = OrderedDict()
        self._signers_lock = threading.Lock()
        # endpoint -> (handler, how the request must be signed: "jwk", "kid" or "either")
        self._routes: dict[str, tuple[Handler, str]] = {
            "new-account": (self._new_account, "jwk"),
            "account": (self._account, "kid"),
            "orders": (self._orders, "kid"),
            "new-order": (self._new_order, "kid"),
            "order": (self._order, "kid"),
            "authz": (self._authorization, "kid"),
            "chall": (self._challenge, "kid"),
            "finalize": (self._finalize, "kid"),
            "cert": (self._certificate, "kid"),
            "revoke-cert": (self._revoke, "either"),
            "key-change": (self._key_change, "kid"),
        }

    # unsigned
    def directory(self, urls: Urls) -> Reply:
        return Reply(200, resources.directory(urls, self.meta))

    def new_nonce(self) -> str:
        return self.nonces.mint()

    def renewal_info(self, urls: Urls, cert_id: str) -> Reply:
        """RFC 9773: when to renew. Two thirds into the lifetime as every lancert flow; now if revoked."""
        certificate = self._certificate_of_ari_id(cert_id)
        if certificate.revoked_at is not None:
            start, end = now() - timedelta(hours=1), now()
        else:
            life = certificate.not_after - certificate.not_before
            start, end = certificate.not_before + life * 2 / 3, certificate.not_before + life * 5 / 6
        window = {"start": resources.rfc3339(start), "end": resources.rfc3339(end)}
        return Reply(200, {"suggestedWindow": window},
                     headers={"Retry-After": str(RENEWAL_INFO_RETRY_AFTER)})

    def _certificate_of_ari_id(self, cert_id: str) -> Any:
        shape = malformed("a renewalInfo certID is base64url(AKI keyIdentifier).base64url(serial)")
        parts = cert_id.split(".")
        if len(parts) != 2 or len(cert_id) > 200:
            raise shape
        try:
            aki, serial = jose.b64decode(parts[0]), jose.b64decode(parts[1])
        except Exception:
            raise shape from None
        with self.database.reading_connection() as c:
            certificate = self.store.certificate_by_serial(c, format(int.from_bytes(serial, "big"), "x"))
        if certificate is None:
            raise malformed("no such certificate", status=404)
        leaf = x509.load_pem_x509_certificate(certificate.chain_pem.encode())
        key_id = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        if key_id != aki:
            raise malformed("no such certificate", status=404)
        return certificate

    # signed
    def post(self, endpoint: str, urls: Urls, url: str, body: bytes, content_type: str | None,
             source_ip: str = "-", **ids: str) -> Reply:
        """One signed request; ``source_ip`` is the peer, for the log lines."""
        signer: list[Account] = []  # the verified account once known: a refusal names its database
        try:
            return self._post(endpoint, urls, url, body, content_type, source_ip, signer, ids)
        except AcmeProblem as problem:
            requestlog.refused_as(problem.code, problem.detail, path=url[len(urls.origin):] or url,
                                  source_ip=source_ip, db_uuid=signer[0].db_uuid if signer else None)
            raise

    def _post(self, endpoint: str, urls: Urls, url: str, body: bytes, content_type: str | None,
              source_ip: str, signer: list[Account], ids: dict[str, str]) -> Reply:
        """Checked in the order that keeps an unauthenticated sender from writing:

        the JWS's shape, then its signer's key (the account is read, not written) and signature; only a
        request that verifies uses its nonce, in the request's one transaction, so a flood of forged
        requests inserts no ``acme_used_nonces`` row. Every refusal after that point is committed with
        the nonce's use (a refused request must not leave its nonce reusable); a nonce seen in a request
        refused before it, e.g. by its signature, is kept refused by the process's :class:`NonceBook`.
        """
        handler, signed_with = self._routes[endpoint]
        request = jws.parse(body)
        header = request.header
        known = self._known_signer(urls, header.kid) if signed_with != "jwk" else None
        if known is not None:
            try:
                request.verify(known.key)
            except AcmeProblem:
                known = None  # maybe a key changed since: decide on the stored key, as for an unknown one
            else:
                try:
                    return self._write(request, urls, url, content_type, handler, ids, known, source_ip,
                                       signer, known=True)
                except _StaleSigner:
                    self._forget_signer(known.id)  # rolled back, nonce unused: decide on the stored key
        try:
            with self.database.reading_connection() as c:
                key, account = self._signing_key(c, urls, request, signed_with)
            request.verify(key)
        except AcmeProblem:
            self.nonces.refuse(header.nonce)
            raise
        if account is not None:
            self._remember_signer(account)
        return self._write(request, urls, url, content_type, handler, ids, account or key, source_ip,
                           signer)

    def _write(self, request: jws.SignedRequest, urls: Urls, url: str, content_type: str | None,
               handler: Handler, ids: dict[str, str], verified: Account | jose.JWK, source_ip: str,
               signer: list[Account], *, known: bool = False) -> Reply:
        """The request's one write transaction, its signature verified with ``verified`` (the account
        whose key it is, or the ``jwk`` of the request itself; ``known``: remembered, not read now)."""
        refusal: AcmeProblem | None = None
        with self._writer, self.database.writing_connection() as c:
            try:
                reply = self._verified(c, request, urls, url, content_type, handler, ids, verified,
                                       source_ip, signer, known)
            except AcmeProblem as problem:
                refusal = problem
        if refusal is not None:
            raise refusal
        return reply.then() if isinstance(reply, AfterCommit) else reply

    # Signers verified recently, by account id: a request signed with a known account's key needs no
    # read transaction before its write one (measured: the read was a fifth of a signed request's CPU).
    # The write transaction reads the account again; if it is no longer valid with that key, the
    # transaction is rolled back (so nothing is written, the nonce stays unused) and the request is
    # decided on the stored account as if it had never been seen: the cache can only save a read.
    def _known_signer(self, urls: Urls, kid: str | None) -> Account | None:
        account_id = urls.account_id_of(kid) if kid is not None else None
        if account_id is None:
            return None
        with self._signers_lock:
            return self._signers.get(account_id)

    def _remember_signer(self, account: Account) -> None:
        with self._signers_lock:
            self._signers[account.id] = account
            self._signers.move_to_end(account.id)
            while len(self._signers) > SIGNERS_KEPT:
                self._signers.popitem(last=False)

    def _forget_signer(self, account_id: str) -> None:
        with self._signers_lock:
            self._signers.pop(account_id, None)

    def _signing_key(
        self, c: Connection, urls: Urls, request: jws.SignedRequest, signed_with: str
    ) -> tuple[jose.JWK, Account | None]:
        """The key the request must be signed with: its account's (``kid``) or its own ``jwk``."""
        header = request.header
        if header.kid is not None:
            if signed_with == "jwk":
                raise malformed("this request must be signed with a jwk, not a kid (RFC 8555 6.2)")
            account = self._account_of_kid(c, urls, header.kid)
            return account.key, account
        if signed_with == "kid":
            raise malformed("this request must be signed with the account's kid, not a jwk")
        jws.check_account_key(header.jwk)
        return header.jwk, None

    def _verified(self, c: Connection, request: jws.SignedRequest, urls: Urls, url: str,
                  content_type: str | None, handler: Handler, ids: dict[str, str],
                  verified: Account | jose.JWK, source_ip: str, signer: list[Account],
                  known: bool) -> Reply | AfterCommit:
        header = request.header
        account = None
        if known:
            # Verified with a remembered key: the account must still be valid with it before anything
            # is written, else roll back and decide on the stored account (see _known_signer).
            try:
                account = self._account_of_kid(c, urls, header.kid)
            except AcmeProblem:
                raise _StaleSigner from None
            if account.thumbprint != verified.thumbprint:  # type: ignore[union-attr]
                raise _StaleSigner
        if header.nonce is None or not self.nonces.use(c, header.nonce):
            raise AcmeProblem("badNonce", "the nonce is unknown, expired or used already; use the new one")
        if (content_type or "").split(";")[0].strip().lower() != JOSE_JSON:
            raise malformed(f"Content-Type must be {JOSE_JSON}", status=415)
        if header.url != url:
            raise wrong_url(header.url, url)
        if header.kid is not None:
            if account is None:
                # Read again in the request's transaction: a key change or deactivation committed since
                # the signature was checked wins.
                account = self._account_of_kid(c, urls, header.kid)
                assert isinstance(verified, Account)
                if account.thumbprint != verified.thumbprint:
                    raise unauthorized("the account's key changed while this request was checked; sign again")
            signer.append(account)
        return handler(Context(request, account, urls, url, c, source_ip), **ids)

    def _account_of_kid(self, c: Connection, urls: Urls, kid: str) -> Account:
        account_id = urls.account_id_of(kid)
        account = self.store.account(c, account_id) if account_id else None
        if account is None:
            raise AcmeProblem("accountDoesNotExist", "no account has this kid")
        if account.status != "valid":
            raise unauthorized(f"the account is {account.status}")
        if account.eab_revoked:
            raise unauthorized("the external account key that opened this account was revoked")
        return account

    # accounts
    def _new_account(self, ctx: Context) -> Reply:
        payload = ctx.request.payload_json()
        key = ctx.request.header.jwk.public_key()
        thumbprint = jws.thumbprint(key)
        existing = self.store.account_by_thumbprint(ctx.db, thumbprint)
        if existing is not None:
            if existing.status != "valid":
                raise unauthorized(f"the account of this key is {existing.status}")
            return Reply(200, resources.account(ctx.urls, existing), location=ctx.urls.account(existing.id))
        if payload.get("onlyReturnExisting") is True:
            raise AcmeProblem("accountDoesNotExist", "no account has this key")
        binding = payload.get("externalAccountBinding")
        if binding is None:
            raise eab_problem_required()
        contact = _contacts(payload.get("contact", []))
        eab_kid, db_uuid = self.eab.verify(ctx.db, binding, key, ctx.url)
        if self.authority.registry.find(db_uuid, connection=ctx.db) is None:
            raise unauthorized("the database of this external account key is no longer registered")
        account = self.store.create_account(ctx.db, key, thumbprint, contact, db_uuid, eab_kid)
        if account is None:  # a concurrent request made it: answer as for an existing account
            account = self.store.account_by_thumbprint(ctx.db, thumbprint)
            assert account is not None
            return Reply(200, resources.account(ctx.urls, account), location=ctx.urls.account(account.id))
        return Reply(201, resources.account(ctx.urls, account), location=ctx.urls.account(account.id))

    def _own_account(self, ctx: Context, account_id: str) -> Account:
        if account_id != ctx.signer.id:
            raise unauthorized("a request about an account must be signed by that account")
        return ctx.signer

    def _account(self, ctx: Context, account_id: str) -> Reply:
        account = self._own_account(ctx, account_id)
        if not ctx.request.is_post_as_get:
            payload = ctx.request.payload_json()
            status = payload.get("status")
            if status is not None and status != "deactivated":
                raise malformed("an account's status can only be changed to deactivated")
            if "contact" in payload:
                self.store.set_contact(ctx.db, account.id, _contacts(payload["contact"]))
            if status == "deactivated":
                self.store.deactivate(ctx.db, account.id)
            updated = self.store.account(ctx.db, account.id)
            assert updated is not None
            account = updated
        return Reply(200, resources.account(ctx.urls, account), location=ctx.urls.account(account.id))

    def _orders(self, ctx: Context, account_id: str) -> Reply:
        _only_get(ctx)
        account = self._own_account(ctx, account_id)
        return Reply(200, {"orders": [ctx.urls.order(i) for i in self.store.order_ids(ctx.db, account.id)]})

    def _key_change(self, ctx: Context) -> Reply:
        """RFC 8555 7.3.5: the inner JWS, signed by the new key, names the account and its old key."""
        account = ctx.signer
        inner = jws.parse(ctx.request.payload)
        if inner.header.jwk is None or inner.header.kid is not None:
            raise malformed("the inner JWS of a key change must carry the new key as jwk")
        if inner.header.nonce is not None:
            raise malformed("the inner JWS of a key change must not have a nonce")
        if inner.header.url != ctx.url:
            raise malformed("the inner JWS's url must be the keyChange URL")
        jws.check_account_key(inner.header.jwk)
        inner.verify(inner.header.jwk)
        change = inner.payload_json()
        if change.get("account") != ctx.request.header.kid:
            raise malformed("the key change names another account than the signer")
        try:
            old = jose.JWK.from_json(change.get("oldKey"))
        except Exception:  # josepy's decoders raise more than DeserializationError on odd members
            raise malformed("oldKey is not a JWK") from None
        if jws.thumbprint(old) != account.thumbprint:
            raise malformed("oldKey is not the account's current key")
        new_key = inner.header.jwk.public_key()
        new_thumbprint = jws.thumbprint(new_key)
        if not self.store.change_key(ctx.db, account.id, new_key, new_thumbprint):
            holder = self.store.account_by_thumbprint(ctx.db, new_thumbprint)
            raise AcmeProblem(
                "malformed", "the new key is already the key of an account", status=409,
                headers={"Location": ctx.urls.account(holder.id)} if holder else {},
            )
        updated = self.store.account(ctx.db, account.id)
        assert updated is not None
        return Reply(200, resources.account(ctx.urls, updated), location=ctx.urls.account(account.id))

    # orders
    def _grant(self, ctx: Context) -> Grant:
        """The database's grant, judged now (a subscription closed a minute ago counts)."""
        found = self.authority.registry.find(ctx.signer.db_uuid, connection=ctx.db)
        if found is None:
            raise unauthorized("the account's database is no longer registered")
        try:
            return self.authority.database_grant(found.record)
        except NotEligible as refusal:
            raise unauthorized(f"{refusal.message} (reason: {refusal.reason})") from None

    def _new_order(self, ctx: Context) -> Reply:
        payload = ctx.request.payload_json()
        if "notBefore" in payload or "notAfter" in payload:
            raise malformed("notBefore and notAfter are not supported: the service sets the lifetime")
        identifiers = payload.get("identifiers")
        if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= MAX_IDENTIFIERS:
            raise malformed(f"identifiers must be a list of 1 to {MAX_IDENTIFIERS} identifiers")
        grant = self._grant(ctx)
        names: list[str] = []
        rejected: list[AcmeProblem] = []
        for item in identifiers:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise malformed("each identifier is {\"type\": ..., \"value\": ...}")
            kind, value = item.get("type"), item["value"][:300]
            if kind != "dns":
                rejected.append(AcmeProblem(
                    "rejectedIdentifier" if kind == "ip" else "unsupportedIdentifier",
                    f"{kind!s:.10} identifiers are not issued: this CA names devices by DNS name only "
                    "(its root is name-constrained and excludes IP addresses)", identifier=value))
                continue
            try:
                name = SubjectNames.parse(dns=[value]).dns[0]
                self.authority.check_requested_names(grant, SubjectNames(dns=(name,)))
            except (InvalidName, NameNotAllowed) as exc:
                rejected.append(AcmeProblem(
                    "rejectedIdentifier",
                    f"{value!r} is not under this account's names {grant.hostname_pattern} "
                    f"(and <ip-with-dashes>.{grant.box_label}.{grant.zone}): {exc}", identifier=value))
                continue
            if name not in names:
                names.append(name)
        if rejected:
            first = rejected[0]
            raise AcmeProblem(first.code if len(rejected) == 1 else "rejectedIdentifier",
                              first.detail if len(rejected) == 1 else
                              f"{len(rejected)} identifiers are refused", subproblems=rejected)
        replaces = self._replaced(ctx, payload, grant, names)
        order = self.store.create_order(ctx.db, ctx.signer.id, names, now() + self.order_lifetime, replaces)
        return Reply(201, resources.order(ctx.urls, order), location=ctx.urls.order(order.id))

    def _replaced(self, ctx: Context, payload: dict[str, Any], grant: Grant, names: list[str]) -> str | None:
        """RFC 9773 section 5 ``replaces`` (mod_md sends it on renewal): the certID of a certificate this
        CA issued to the same account, for the same database, sharing a name with the order, and not
        already replaced by another order that is not invalid. None when the order replaces nothing."""
        if "replaces" not in payload:
            return None
        cert_id = payload["replaces"]
        if not isinstance(cert_id, str):
            raise malformed("replaces is a certID: base64url(AKI keyIdentifier).base64url(serial)")
        try:
            certificate = self._certificate_of_ari_id(cert_id)
        except AcmeProblem:
            raise malformed(f"replaces names no certificate this CA issued: {cert_id[:100]!r}") from None
        if certificate.account_id != ctx.signer.id or certificate.db_uuid != grant.database.uuid:
            raise unauthorized("replaces names a certificate of another account; an order may replace only "
                               "a certificate issued to its own account")
        leaf = x509.load_pem_x509_certificate(certificate.chain_pem.encode())
        issued = {n.lower() for n in leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)}
        if not issued & set(names):
            raise malformed("replaces names a certificate that shares no identifier with this order")
        other = self.store.replaced_by(ctx.db, cert_id)
        if other is not None:
            raise AcmeProblem("alreadyReplaced", f"that certificate is already replaced by order {other}",
                              status=409)
        return cert_id

    def _own_order(self, ctx: Context, order_id: str) -> Order:
        order = self.store.order(ctx.db, order_id)
        if order is None or order.account_id != ctx.signer.id:
            raise malformed("no such order", status=404)
        return order

    def _order(self, ctx: Context, order_id: str) -> Reply:
        _only_get(ctx)
        order = self._own_order(ctx, order_id)
        return Reply(200, resources.order(ctx.urls, order), headers=_retry_headers(order))

    def _indexed(self, ctx: Context, order_id: str, index: str) -> tuple[Order, int]:
        order = self._own_order(ctx, order_id)
        # isdigit() alone takes "²" and other digits int() refuses: only ASCII decimals here.
        if not (index.isascii() and index.isdigit()) or len(index) > 4 or int(index) >= len(order.names):
            raise malformed("no such authorization", status=404)
        return order, int(index)

    def _authorization(self, ctx: Context, order_id: str, index: str) -> Reply:
        order, i = self._indexed(ctx, order_id, index)
        if not ctx.request.is_post_as_get:
            if ctx.request.payload_json().get("status") == "deactivated":
                raise malformed("authorizations here are valid by construction and cannot be deactivated")
            raise malformed("an authorization is read with an empty payload (POST-as-GET)")
        return Reply(200, resources.authorization(ctx.urls, order, i))

    def _challenge(self, ctx: Context, order_id: str, index: str) -> Reply:
        order, i = self._indexed(ctx, order_id, index)
        if not ctx.request.is_post_as_get and ctx.request.payload_json() != {}:
            raise malformed("a challenge is answered with {} (or read with an empty payload)")
        return Reply(200, resources.challenge(ctx.urls, order, i),
                     links=(f'<{ctx.urls.authorization(order.id, i)}>;rel="up"',))

    def _finalize(self, ctx: Context, order_id: str) -> AfterCommit:
        order = self._own_order(ctx, order_id)
        if order.status != "ready":
            raise AcmeProblem("orderNotReady", f"the order is {order.status}, not ready")
        if order.expires <= now():
            raise AcmeProblem("orderNotReady", "the order expired; place a new one")
        payload = ctx.request.payload_json()
        csr = _csr_of(payload, order)
        grant = self._grant(ctx)
        if not self.store.claim_for_finalize(ctx.db, order.id):
            raise AcmeProblem("orderNotReady", "the order is being finalized already")
        processing = replace(order, status="processing")
        start = self._issuing(processing, grant, csr, ctx.source_ip)
        return AfterCommit(lambda: self._finalized(ctx.urls, processing, start()))

    def _issuing(self, order: Order, grant: Grant, csr: x509.CertificateSigningRequest,
                 source_ip: str) -> Callable[[], Future[Order]]:
        """What starts the issuance step of a claimed order (in a thread of its own when the issuer places
        orders upstream, else at once in the caller's), called once the claim is committed; its future
        gives the order as it ended, ``valid`` or ``invalid``, and for an invalid one the problem is also
        :attr:`Order.error` (set by the issuing thread)."""
        done: Future[Order] = Future()
        completed: list[Order] = []

        def complete(connection: Connection, issued: IssuedChain) -> None:
            """In the transaction that records the certificate: the order is valid with it (told to the
            waiting request only once that transaction committed)."""
            certificate = {
                "id": new_id(), "order_id": order.id, "account_id": order.account_id,
                "db_uuid": grant.database.uuid, "serial": issued.serial_hex, "chain_pem": issued.chain_pem(),
                "not_before": issued.not_before, "not_after": issued.not_after,
                "revoked_at": None, "revocation_reason": None,
            }
            self.store.complete_order(connection, order.id, certificate)
            completed[:] = [replace(order, status="valid", certificate_id=certificate["id"])]

        # An issuer that signs at once (the internal CA) records in this thread: it queues on the
        # process's SQLite writer lock as the requests do (see __init__); an upstream order records
        # from the order desk's thread, and nothing may hold that lock while the CA works.
        queue = nullcontext() if self.provisioner.issuer.places_orders else self._writer

        def run() -> None:
            try:
                with queue:
                    self.provisioner.issue(
                        grant, csr, front="acme", names=SubjectNames(dns=order.names), source_ip=source_ip,
                        deadline=time.monotonic() + ISSUANCE_DEADLINE, also_record=complete,
                    )
                done.set_result(completed[-1])
                return
            except (UpstreamFailed, IssuancePending) as refusal:
                problem = _problem_of(refusal)
            except Exception:
                log.exception("issuing for order %s failed", order.id)
                problem = AcmeProblem("serverInternal", "the certificate could not be issued")
            try:
                with self._writer, self.database.writing_connection() as c:
                    self.store.fail_order(c, order.id, problem.to_json())
            except Exception:
                log.exception("could not record the failure of order %s", order.id)
            if not done.done():
                done.set_exception(problem)

        def start() -> Future[Order]:
            if self.provisioner.issuer.places_orders:
                threading.Thread(target=run, name=f"lancert-acme-finalize-{order.id}", daemon=True).start()
            else:
                # The internal CA signs in a millisecond: in the request's own worker thread (committed
                # already), not a thread started per certificate (a seventh of a finalize's time).
                run()
            return done

        return start

    def _finalized(self, urls: Urls, order: Order, issuing: Future[Order]) -> Reply:
        """The finalize answer: the order once issued if that took at most FINALIZE_WAIT, else still
        processing (with Retry-After); a refusal of the issuance step as its problem (the order is
        invalid then, with that problem as its error)."""
        try:
            order = issuing.result(timeout=FINALIZE_WAIT)
        except FutureTimeout:
            pass
        return Reply(200, resources.order(urls, order), location=urls.order(order.id),
                     headers=_retry_headers(order))

    # certificates
    def _certificate(self, ctx: Context, certificate_id: str) -> Reply:
        _only_get(ctx)
        certificate = self.store.certificate(ctx.db, certificate_id)
        if certificate is None or certificate.account_id != ctx.signer.id:
            raise malformed("no such certificate", status=404)
        return Reply(200, certificate.chain_pem, content_type=PEM_CHAIN)

    def _revoke(self, ctx: Context) -> Reply:
        payload = ctx.request.payload_json()
        reason = payload.get("reason", 0)
        if type(reason) is not int or reason not in REVOCATION_REASONS:
            raise AcmeProblem("badRevocationReason",
                              f"reason must be one of {sorted(REVOCATION_REASONS)} (RFC 5280 codes)")
        try:
            leaf = x509.load_der_x509_certificate(jose.b64decode(payload.get("certificate", "")))
        except Exception:
            raise malformed("certificate must be the base64url DER of the certificate") from None
        certificate = self.store.certificate_by_serial(ctx.db, format(leaf.serial_number, "x"))
        if certificate is None or not certificate.chain_pem.startswith(pem([leaf]).decode()):
            raise malformed("this CA did not issue that certificate", status=404)
        if ctx.account is not None:
            # The account that ordered it, or any account of the same database (same label: it holds
            # the authorization for every name of the certificate).
            if ctx.account.db_uuid != certificate.db_uuid:
                raise unauthorized("this account may not revoke that certificate")
        elif not _same_public_key(ctx.request.header.jwk, leaf):
            raise unauthorized("the request is signed by neither an account nor the certificate's key")
        if not self.store.revoke(ctx.db, certificate.id, reason):
            raise AcmeProblem("alreadyRevoked", "the certificate is revoked already")
        return Reply(200)


def _retry_headers(order: Order) -> dict[str, str]:
    """Retry-After while the order is processing (not once it reads invalid at expiry: resources.order)."""
    processing = order.status == "processing" and order.expires > now()
    return {"Retry-After": str(PROCESSING_RETRY_AFTER)} if processing else {}


def _problem_of(refusal: UpstreamFailed | IssuancePending) -> AcmeProblem:
    """The issuance step's refusal as the ACME client's problem: "not now" (a back-off, the per-name
    failure limit, the upstream CA's rate limit) is ``rateLimited`` with Retry-After; an upstream
    failure is ``serverInternal`` with its reason (the client may try a new order)."""
    retry = refusal.retry_after
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    if isinstance(refusal, IssuancePending):
        return AcmeProblem("serverInternal", f"the certificate did not come in time: {refusal.message}",
                           headers=headers)
    if refusal.reason in _NOT_NOW:
        return AcmeProblem("rateLimited", refusal.message, headers=headers)
    return AcmeProblem("serverInternal", f"{refusal.message} (reason: {refusal.reason})", headers=headers)


def _only_get(ctx: Context) -> None:
    if not ctx.request.is_post_as_get:
        raise malformed("this resource is read with POST-as-GET: the payload must be empty (RFC 8555 6.3)")


def wrong_url(claimed: str, actual: str) -> AcmeProblem:
    return malformed(f"the JWS url {claimed[:200]!r} is not this request's URL {actual!r}")


def _contacts(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_CONTACTS or not all(isinstance(v, str) for v in value):
        raise malformed(f"contact must be a list of at most {MAX_CONTACTS} mailto: URLs")
    for contact in value:
        if not contact.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", "only mailto: contacts are supported")
        if not _EMAIL.match(contact[len("mailto:"):]):
            raise AcmeProblem("invalidContact", f"not an email address: {contact[:100]!r}")
    return list(value)


def _csr_of(payload: dict[str, Any], order: Order) -> x509.CertificateSigningRequest:
    """The finalize CSR, refused with ``badCSR`` unless it asks for exactly the order's names.

    RFC 8555 §7.4: a dns identifier may be in the subject's commonName, in the subjectAltName, or both, so
    the names asked are the union of the two (acme-tiny documents ``-subj /CN=name``, no SAN). The
    certificate issued names the order's identifiers in its subjectAltName either way (CA/B profile)."""
    try:
        der = jose.b64decode(payload.get("csr", ""))
    except Exception:
        raise AcmeProblem("badCSR", "csr must be the base64url DER of a CSR") from None
    try:
        csr = load_csr(der)
        requested = csr_names(csr)
    except PKIError as exc:  # unparsable, bad self-signature, weak key
        raise AcmeProblem("badCSR", str(exc)) from None
    cn = common_name(csr.subject)
    asked = {n.lower() for n in requested.dns} | ({cn.lower()} if cn else set())
    if requested.ips or requested.uris or asked != set(order.names):
        raise AcmeProblem("badCSR", "the CSR must name exactly the order's identifiers: "
                          f"{', '.join(order.names)}")
    return csr


def _same_public_key(key: jose.JWK | None, leaf: x509.Certificate) -> bool:
    if key is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().key.public_bytes(*fmt) == leaf.public_key().public_bytes(*fmt)
