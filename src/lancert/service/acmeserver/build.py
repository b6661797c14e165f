"""lancert as an ACME CA (RFC 8555) for standard clients (certbot, lego, Caddy...), bound to the
service's eligibility registry by mandatory External Account Binding.

The room's table of contents: :mod:`.protocol` (what each endpoint does), :mod:`.resources` (URLs and
JSON views), :mod:`.jws` (signed requests, josepy), :mod:`.nonces`, :mod:`.eab`, :mod:`.problems`
(RFC 7807 documents), :mod:`.store` and :mod:`.models` (SQL state), :mod:`.tls` (the endpoint's own
certificate), :mod:`.app` (the ASGI transport). :func:`build_acme_server` wires them to the service's
database, authority and issuance step (the provisioner).
"""

from __future__ import annotations

import secrets

from lancert.service.acmeserver.eab import EabKeys
from lancert.service.acmeserver.nonces import NonceBook
from lancert.service.acmeserver.protocol import AcmeServer
from lancert.service.acmeserver.store import AcmeStore
from lancert.service.authority import Authority
from lancert.service.database import Database
from lancert.service.models import read_state, write_state
from lancert.service.provisioning import Provisioner

STATE_NONCE_SECRET = "acme_nonce_secret"  # noqa: S105 - a row name, not a secret
LOCK_ACME_STATE = 0x6C616E11


def nonce_secret(database: Database) -> bytes:
    """The HMAC key of nonces, made once and shared by every instance (``service_state``)."""
    with database.reading() as connection:
        value = read_state(connection, STATE_NONCE_SECRET)
    if value is None:
        with database.transaction() as connection:
            database.advisory_lock(connection, LOCK_ACME_STATE)
            value = read_state(connection, STATE_NONCE_SECRET)
            if value is None:
                value = secrets.token_bytes(32).hex()
                write_state(connection, STATE_NONCE_SECRET, value)
    return bytes.fromhex(value)


def build_acme_server(
    database: Database, authority: Authority, provisioner: Provisioner, meta: dict[str, str] | None = None
) -> AcmeServer:
    return AcmeServer(database, AcmeStore(), EabKeys(database), NonceBook(nonce_secret(database)),
                      authority, provisioner, meta=meta)
