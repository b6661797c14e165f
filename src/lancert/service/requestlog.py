"""The service's one log line per request that matters, called from the HTTP handlers, the ACME
server and the issuance step (:meth:`lancert.service.provisioning.Provisioner.issue`).

Issued: database, box label, serial, not_after, the front (native, compatible, acme). Refused: the
error code (an ACME problem type on the ACME port), the reason, the database named in the request or
bound to the ACME account. Never the enterprise code, the CSR or a key.
"""

from __future__ import annotations

import logging

from lancert.pki import SubjectNames, certificate_names
from lancert.service import metrics
from lancert.service.authority import Grant
from lancert.service.errors import ServiceError
from lancert.service.issuer import IssuedChain

log = logging.getLogger("lancert.service")
# Messages can quote what a client sent (a field name): no control characters, so one request stays one line.
_CONTROL = {c: " " for c in range(32)}
_MAX_MESSAGE = 200


def _clean(text: str) -> str:
    return text.translate(_CONTROL)[:_MAX_MESSAGE]


def issued(
    grant: Grant, chain: IssuedChain, *, style: str, source_ip: str, names: SubjectNames | None = None
) -> None:
    """The names are the certificate's own (an ACME client may order hosts of its label, not the
    wildcard): ``names`` when the caller had the issuer sign exactly those, else read from the leaf."""
    metrics.issued(style)
    shown = ", ".join((names if names is not None else certificate_names(chain.leaf)).dns[:5])
    shown = shown or grant.hostname_pattern
    log.info("issued %s for database %s, label %s (%s call from %s): serial %s, not_after %s",
             shown, grant.database.uuid, grant.box_label, style, source_ip,
             chain.serial_hex, chain.not_after.isoformat(timespec="seconds"))


def refused(error: ServiceError, *, path: str, source_ip: str, db_uuid: str | None = None) -> None:
    why = str(error.details.get("reason") or error.details.get("field") or "")
    # The metric's reason: the service's own reason word or the error code, never a field name (a
    # client chooses those: one label value per invented field would grow the scrape without end).
    metrics.refused(metrics.front_of(path), str(error.details.get("reason") or error.code))
    _line(error.code, error.message, path=path, source_ip=source_ip, db_uuid=db_uuid, why=why)


def refused_as(
    code: str, message: str, *, path: str, source_ip: str, db_uuid: str | None = None, why: str = ""
) -> None:
    """A refusal by its code (an ACME problem type such as ``rateLimited``): the same line as
    :func:`refused`, for fronts whose errors are not :class:`ServiceError`."""
    metrics.refused(metrics.front_of(path), code.rsplit(":", 1)[-1])
    _line(code, message, path=path, source_ip=source_ip, db_uuid=db_uuid, why=why)


def _line(
    code: str, message: str, *, path: str, source_ip: str, db_uuid: str | None = None, why: str = ""
) -> None:
    log.info("refused %s from %s%s: %s%s (%s)", _clean(path), source_ip,
             f" for database {_clean(db_uuid)}" if db_uuid else "", _clean(code),
             f" {_clean(why)}" if why else "", _clean(message))
