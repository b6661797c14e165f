"""Handing out a certificate to a box: ask the authority, have the issuer sign, record it, answer.

Both HTTP fronts call :class:`Provisioner`; it knows neither HTTP nor JSON-RPC framing beyond the
schemas. Every issued certificate is recorded in the same transaction that checks its serial's
uniqueness, so a failed request leaves nothing behind and no two records share a serial.
"""

from __future__ import annotations

from cryptography import x509
from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from lancert.pki import (
    InvalidCSR,
    InvalidName,
    PKIError,
    create_csr,
    csr_names,
    generate_private_key,
    load_csr,
    pem,
)
from lancert.pki import private_key_pem as encode_private_key
from lancert.service.authority import Authority, Grant
from lancert.service.database import Database
from lancert.service.errors import InvalidCSRError, NotEligible
from lancert.service.issuer import IssuedChain, Issuer
from lancert.service.models import IssuedCertificate
from lancert.service.schemas import (
    CertificateRequest,
    CertificateResponse,
    CompatibleCertificate,
    CompatibleRefusal,
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
    def __init__(self, database: Database, authority: Authority, issuer: Issuer) -> None:
        self.database = database
        self.authority = authority
        self.issuer = issuer

    def native(self, request: CertificateRequest, source_ip: str) -> CertificateResponse:
        """The box's key stays on the box: it sends a CSR, it gets the chain for its subdomain."""
        grant = self.authority.authorize(
            request.db_uuid, request.enterprise_code, box_id=request.box_id, source_ip=source_ip
        )
        try:
            csr = load_csr(request.csr)
            requested = csr_names(csr)
        except (InvalidCSR, InvalidName, PKIError) as exc:  # WeakKey is a PKIError
            raise InvalidCSRError(str(exc)) from None
        self.authority.check_requested_names(grant, requested)
        issued = self._issue_and_record(grant, csr, style="native")
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
        """What unmodified Odoo boxes expect: the service makes the key, refusals go in ``result``."""
        params = request.params
        try:
            grant = self.authority.authorize(
                params.db_uuid, params.enterprise_code, box_id=None, source_ip=source_ip
            )
        except NotEligible as refusal:
            return CompatibleResponse(
                id=request.id, result=CompatibleRefusal(error=refusal.message, reason=refusal.reason)
            )
        key = generate_private_key()
        issued = self._issue_and_record(grant, create_csr(key, grant.names), style="compatible")
        return CompatibleResponse(
            id=request.id,
            result=CompatibleCertificate(
                subject_cn=grant.hostname_pattern,
                x509_pem=issued.chain_pem(),
                private_key_pem=encode_private_key(key).decode(),
            ),
        )

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
