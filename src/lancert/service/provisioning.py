"""Handing out a certificate to a box: ask the authority, have the issuer sign, record it, answer.

Both HTTP fronts call :class:`Provisioner`; it knows neither HTTP nor JSON-RPC framing beyond the
schemas. Every issued certificate is recorded in the same transaction that checks its serial's
uniqueness, so a failed request leaves nothing behind and no two records share a serial.

The compatible call always goes through the :class:`~lancert.service.orders.OrderDesk` (one cached
pair per database, a bounded wait, orders in the background); the native call does when the issuer
places orders (an upstream CA), and signs in the request otherwise (the internal CA: microseconds, no
order state to keep).
"""

from __future__ import annotations

import time

from cryptography import x509
from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from lancert.pki import (
    InvalidCSR,
    InvalidName,
    PKIError,
    csr_names,
    load_csr,
    pem,
)
from lancert.service import requestlog
from lancert.service.authority import Authority, Grant
from lancert.service.config import OrderPolicy
from lancert.service.database import Database
from lancert.service.errors import InvalidCSRError
from lancert.service.issuer import IssuedChain, Issuer
from lancert.service.models import IssuedCertificate
from lancert.service.orders import OrderDesk
from lancert.service.schemas import (
    CertificateRequest,
    CertificateResponse,
    CompatibleCertificate,
    CompatibleRequest,
    CompatibleResponse,
)

SERIAL_ATTEMPTS = 3
# Built once; a Core INSERT in its own short write transaction (on SQLite the only BEGIN IMMEDIATE of a
# successful request). The reads (counters, registry) stay in a separate deferred snapshot before it:
# one transaction around both would make every request queue for SQLite's single writer lock during the
# reads and the signing too, and would have to be held across the CSR check and the signature.
_RECORD = insert(IssuedCertificate.__table__)


def record_issued(
    connection: Connection, grant: Grant, issued: IssuedChain, *, style: str, issuer: str
) -> None:
    """Record a certificate in ``issued_certificates`` inside the caller's transaction; a serial seen
    before raises IntegrityError (every front that issues calls this: native, compatible, ACME)."""
    connection.execute(
        _RECORD,
        {
            "serial": issued.serial_hex,
            "db_uuid": grant.database.uuid,
            "box_id": grant.box_id,
            "box_label": grant.box_label,
            "style": style,
            "issuer": issuer,
            "not_before": issued.not_before,
            "not_after": issued.not_after,
            "certificate_pem": pem([issued.leaf]).decode(),
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

    def native(self, request: CertificateRequest, source_ip: str) -> CertificateResponse:
        """The box's key stays on the box: it sends a CSR, it gets the chain for its subdomain."""
        arrived = time.monotonic()
        grant = self.authority.authorize(
            request.db_uuid, request.enterprise_code, box_id=request.box_id, source_ip=source_ip
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
        if self.issuer.places_orders:
            issued = self.orders.native(grant, csr, arrived=arrived, source_ip=source_ip)
        else:
            issued = self._issue_and_record(grant, csr, style="native")
            requestlog.issued(grant, issued, style="native", source_ip=source_ip)
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

    def record(self, grant: Grant, issued: IssuedChain, style: str, source_ip: str = "-") -> None:
        """Record a certificate an order produced (the order desk calls this from its threads)."""
        with self.database.writing_connection() as connection:
            record_issued(connection, grant, issued, style=style, issuer=self.issuer.name)
        requestlog.issued(grant, issued, style=style, source_ip=source_ip)

    def _issue_and_record(
        self, grant: Grant, csr: x509.CertificateSigningRequest, *, style: str
    ) -> IssuedChain:
        for attempt in range(SERIAL_ATTEMPTS):
            issued = self.issuer.issue_server_certificate(csr, grant.names)
            try:
                with self.database.writing_connection() as connection:
                    record_issued(connection, grant, issued, style=style, issuer=self.issuer.name)
                return issued
            except IntegrityError:
                # 159 random bits make this practically impossible; the UNIQUE constraint makes it certain.
                if attempt == SERIAL_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
