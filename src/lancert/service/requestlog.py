"""The service's one log line per request that matters, called from the HTTP handlers and the provisioner.

Issued: database, box label, serial, not_after. Refused: the error code, the reason, the database
named in the request. Never the enterprise code, the CSR or a key.
"""

from __future__ import annotations

import logging

from lancert.service.authority import Grant
from lancert.service.errors import ServiceError
from lancert.service.issuer import IssuedChain

log = logging.getLogger("lancert.service")
# Messages can quote what a client sent (a field name): no control characters, so one request stays one line.
_CONTROL = {c: " " for c in range(32)}
_MAX_MESSAGE = 200


def _clean(text: str) -> str:
    return text.translate(_CONTROL)[:_MAX_MESSAGE]


def issued(grant: Grant, chain: IssuedChain, *, style: str, source_ip: str) -> None:
    log.info("issued %s for database %s, label %s (%s call from %s): serial %s, not_after %s",
             grant.hostname_pattern, grant.database.uuid, grant.box_label, style, source_ip,
             chain.serial_hex, chain.not_after.isoformat(timespec="seconds"))


def refused(error: ServiceError, *, path: str, source_ip: str, db_uuid: str | None = None) -> None:
    why = str(error.details.get("reason") or error.details.get("field") or "")
    log.info("refused %s from %s%s: %s%s (%s)", path, source_ip,
             f" for database {_clean(db_uuid)}" if db_uuid else "", error.code,
             f" {_clean(why)}" if why else "", _clean(error.message))
