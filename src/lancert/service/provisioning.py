"""Handing out a certificate: ask the authority, go through the order desk, have the issuer sign,
record it, log it, answer.

Every front issues through :meth:`Provisioner.issue`, the service's one issuance step: the native API
(the box's CSR), the compatible call (through :meth:`OrderDesk.compatible`, which makes the key and
caches the pair, then records and logs here too) and the ACME server (:mod:`.acmeserver`). Each front
makes its own authority decision first (a code, an ACME account bound to a database) and frames its own
answer; the step between is the same for all. Every issued certificate is recorded in the same
transaction that checks its serial's uniqueness, so a failed request leaves nothing behind and no two
records share a serial.

The order desk (:mod:`lancert.service.orders`: one order per name across instances, failure limits and
back-off per name, a bounded wait) is taken whenever the issuer places orders (an upstream CA), and by
the compatible call always; the internal CA signs in the caller's thread (microseconds, nothing that can
fail upstream, no order state to keep). No database transaction is open while an issuer works.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from lancert.pki import (
    InvalidCSR,
    InvalidName,
    PKIError,
    SubjectNames,
    csr_names,
    load_csr,
)
from lancert.service import requestlog
from lancert.service.authority import Authority, Grant
from lancert.service.config import OrderPolicy
from lancert.service.database import Database, DriverStatement, WouldWait
from lancert.service.errors import InvalidCSRError
from lancert.service.issuer import IssuedChain, Issuer
from lancert.service.models import ISSUED_CERTIFICATES
from lancert.service.orders import AlsoRecord, OrderDesk

if TYPE_CHECKING:
    # The fronts that parse a request import these (the native lane, the FastAPI app); the ACME server
    # issues here too and never needs pydantic (lancert.service.app says why it is imported late).
    from lancert.wire.provisioning import (
        CertificateRequest,
        CertificateResponse,
        CompatibleRequest,
        CompatibleResponse,
    )

SERIAL_ATTEMPTS = 3
# Built once; a Core INSERT in its own short write transaction (on SQLite the only BEGIN IMMEDIATE of a
# successful request). The reads (counters, registry) stay in a separate deferred snapshot before it:
# one transaction around both would make every request queue for SQLite's single writer lock during the
# reads and the signing too, and would have to be held across the CSR check and the signature.
# Through the driver (DriverStatement: every certificate of every front runs it), naming every column
# but the autoincremented id, issued_at included (no Python-side default is applied there).
_RECORD = DriverStatement(
    insert(ISSUED_CERTIFICATES),
    column_keys=[c.key for c in ISSUED_CERTIFICATES.c if c.key != "id"],
)


def record_issued(
    connection: Connection, grant: Grant, issued: IssuedChain, *, style: str, issuer: str
) -> None:
    """Record a certificate in ``issued_certificates`` inside the caller's transaction; a serial seen
    before raises IntegrityError (every front that issues calls this: native, compatible, ACME)."""
    _RECORD(
        connection,
        {
            "serial": issued.serial_hex,
            "db_uuid": grant.database.uuid,
            "box_id": grant.box_id,
            "box_label": grant.box_label,
            "style": style,
            "issuer": issuer,
            "not_before": issued.not_before,
            "not_after": issued.not_after,
            "certificate_pem": issued.leaf_pem,
            "issued_at": datetime.now(UTC),
        },
    )


class Provisioner:
    def __init__(
        self, database: Database, authority: Authority, issuer: Issuer, policy: OrderPolicy | None = None
    ) -> None:
        self.database = database
        self.authority = authority
        self.issuer = issuer
        self.orders = OrderDesk(database, issuer, policy or OrderPolicy(), self.record)

    def close(self) -> None:
        self.orders.close()

    def native(
        self, request: CertificateRequest, source_ip: str, *, now: bool = False
    ) -> CertificateResponse:
        """The box's key stays on the box: it sends a CSR, it gets the chain for its subdomain.

        ``now``: the event loop's attempt (:class:`lancert.service.app.NativeLane`): the same steps and
        answers, or :class:`~lancert.service.database.WouldWait` where one would wait (a lock, an
        scrypt, an order), raised before anything is recorded or logged."""
        from lancert.wire.provisioning import CertificateResponse  # imported with the request's model

        arrived = time.monotonic()
        grant = self.authority.authorize(
            request.db_uuid, request.enterprise_code, box_id=request.box_id, source_ip=source_ip, now=now
        )
        try:
            csr = load_csr(request.csr)
            requested = csr_names(csr)
        except (InvalidCSR, InvalidName, PKIError) as exc:  # WeakKey is a PKIError
            raise InvalidCSRError(str(exc)) from None
        self.authority.check_requested_names(grant, requested)
        if self.issuer.needs_csr_names and sorted(requested.dns) != [grant.hostname_pattern]:
            raise InvalidCSRError(
                f"this service's CA signs only a CSR that asks for {grant.hostname_pattern}: "
                "send the CSR again with that name",
                hostname_pattern=grant.hostname_pattern,
                box_label=grant.box_label,
                zone=grant.zone,
            )
        issued = self.issue(
            grant, csr, front="native", source_ip=source_ip,
            deadline=arrived + self.orders.policy.native_deadline, now=now,
        )
        return CertificateResponse(
            certificate_chain_pem=issued.chain_pem(),
            hostname_pattern=grant.hostname_pattern,
            box_label=grant.box_label,
            zone=grant.zone,
            not_before=issued.not_before,
            not_after=issued.not_after,
            renew_after=issued.renew_after,
        )

    def compatible(self, request: CompatibleRequest, source_ip: str) -> CompatibleResponse:
        """What unmodified Odoo boxes expect: the service makes the key and hands it out.

        A refusal (not eligible, rate limited, still being ordered, the upstream CA failed) is raised as
        the same :class:`~lancert.service.errors.ServiceError` the native call raises; the HTTP front
        frames it in the one form every box generation reads (:mod:`lancert.service.compatible`).
        """
        from lancert.wire.provisioning import CompatibleCertificate, CompatibleResponse

        arrived = time.monotonic()
        params = request.params
        grant = self.authority.authorize(
            params.db_uuid, params.enterprise_code, box_id=None, source_ip=source_ip
        )
        cached = self.orders.compatible(grant, arrived=arrived, source_ip=source_ip)
        return CompatibleResponse(
            id=request.id,
            result=CompatibleCertificate(
                subject_cn=grant.hostname_pattern,
                x509_pem=cached.chain_pem,
                private_key_pem=cached.private_key_pem,
            ),
        )

    def issue(
        self,
        grant: Grant,
        csr: x509.CertificateSigningRequest,
        *,
        front: str,
        deadline: float,
        names: SubjectNames | None = None,
        source_ip: str = "-",
        also_record: AlsoRecord | None = None,
        now: bool = False,
    ) -> IssuedChain:
        """The one issuance step, after the front's authority decision: order desk, issuer, record,
        log line. Returns the chain, or raises what the front turns into its own refusal.

        ``grant``: what the authority allowed (its label is the name the desk locks and limits);
        ``csr``: the requester's key, already checked by :func:`lancert.pki.load_csr` and against the
        grant by the front; ``names``: what to sign, inside the grant (default: the grant's wildcard);
        ``front``: ``native``, ``compatible`` or ``acme``, the record's style and the log line's;
        ``deadline``: ``time.monotonic()`` until which the caller waits for an order (an upstream CA)
        before :class:`IssuancePending` (the order goes on and is recorded when it ends);
        ``also_record``: the front's own rows, written in the transaction that records the
        certificate (the ACME server completes its order there, so a certificate is never recorded
        without its order, nor the reverse).

        Raises :class:`IssuancePending` (still ordering), :class:`UpstreamFailed` (the issuer failed,
        or the name is backed off or over its failure limit; with ``retry_after``).
        Called from any thread, never inside a database transaction: an order may take a minute.
        ``now``: :class:`WouldWait` where it would wait (an order; the record's transaction, see
        :meth:`Database.now_transaction`), with nothing recorded or logged.
        """
        if self.issuer.places_orders:
            if now:
                raise WouldWait("an order may take a minute")
            return self.orders.order(
                grant, csr, style=front, names=names, deadline=deadline, source_ip=source_ip,
                also_record=also_record,
            )
        signed = names or grant.names
        issued = self._issue_and_record(grant, csr, signed, style=front, also_record=also_record, now=now)
        # The issuer signs exactly the names it is given (Issuer.issue_server_certificate).
        requestlog.issued(grant, issued, style=front, source_ip=source_ip, names=signed)
        return issued

    def record(
        self,
        grant: Grant,
        issued: IssuedChain,
        style: str,
        source_ip: str = "-",
        also_record: AlsoRecord | None = None,
    ) -> None:
        """Record a certificate an order produced and log it (the order desk calls this from its
        threads, once per certificate, whether or not a request still waits for it)."""
        with self.database.writing_connection() as connection:
            record_issued(connection, grant, issued, style=style, issuer=self.issuer.name)
            if also_record is not None:
                also_record(connection, issued)
        requestlog.issued(grant, issued, style=style, source_ip=source_ip)

    def _issue_and_record(
        self,
        grant: Grant,
        csr: x509.CertificateSigningRequest,
        names: SubjectNames,
        *,
        style: str,
        also_record: AlsoRecord | None,
        now: bool = False,
    ) -> IssuedChain:
        for attempt in range(SERIAL_ATTEMPTS):
            issued = self.issuer.issue_server_certificate(csr, names)
            try:
                with (self.database.now_transaction(write=True) if now
                      else self.database.writing_connection()) as connection:
                    record_issued(connection, grant, issued, style=style, issuer=self.issuer.name)
                    if also_record is not None:
                        also_record(connection, issued)
                return issued
            except IntegrityError:
                # 159 random bits make this practically impossible; the UNIQUE constraint makes it certain.
                if attempt == SERIAL_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
