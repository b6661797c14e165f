"""SQL tables of the ACME server (in the service's ``METADATA``, so one database and one migration
history hold everything). Their history: ``service/migrations/versions/0003_acme_server.py``.

Everything lives in SQL, never in process memory, so that a restart loses nothing and several
instances on one PostgreSQL serve one client: a nonce minted by one instance is consumed by another.
"""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Table, Text

from lancert.service.models import METADATA, UTCDateTime, created, optional, primary, required

# An External Account Binding key: binds new ACME accounts to one registered database. The HMAC key is
# stored as is, because checking the binding's MAC needs it (like the CA's intermediate key in
# ``service_state``); it is printed once by ``service acme-eab`` and never logged.
ACME_EAB_KEYS = Table(
    "acme_eab_keys", METADATA,
    primary("kid", String(64)),
    required("db_uuid", String(128)),
    required("hmac_key", String(128)),  # base64url, no padding
    created(),
    optional("revoked_at", UTCDateTime()),
    Index("ix_acme_eab_keys_db_uuid", "db_uuid"),
)

ACME_ACCOUNTS = Table(
    "acme_accounts", METADATA,
    primary("id", String(32)),
    required("thumbprint", String(64)),  # RFC 7638 SHA-256, base64url: one account per key
    required("jwk", Text),
    required("status", String(16)),  # valid | deactivated
    required("contact", Text),  # JSON list of mailto: URLs
    required("db_uuid", String(128)),
    required("eab_kid", String(64)),
    created(),
    Index("ix_acme_accounts_thumbprint", "thumbprint", unique=True),
)

# An order and its authorizations (one per identifier, stored in ``identifiers`` order).
ACME_ORDERS = Table(
    "acme_orders", METADATA,
    primary("id", String(32)),
    required("account_id", String(32)),
    required("status", String(16)),  # ready | processing | valid | invalid
    required("identifiers", Text),  # JSON list of DNS names as ordered (wildcards with *.)
    required("expires", UTCDateTime()),
    optional("certificate_id", String(32)),
    optional("error", Text),  # JSON problem document when invalid
    created(),
    optional("replaces", String(256)),  # RFC 9773 certID the order replaces
    Index("ix_acme_orders_account_id", "account_id"),
    Index("ix_acme_orders_replaces", "replaces"),
)

# A certificate issued through ACME: the chain to download, and its revocation.
ACME_CERTIFICATES = Table(
    "acme_certificates", METADATA,
    primary("id", String(32)),
    required("order_id", String(32)),
    required("account_id", String(32)),
    required("db_uuid", String(128)),
    required("serial", String(64)),  # lower-case hex, as issued_certificates.serial
    required("chain_pem", Text),
    required("not_before", UTCDateTime()),
    required("not_after", UTCDateTime()),
    optional("revoked_at", UTCDateTime()),
    optional("revocation_reason", Integer),
    Index("ix_acme_certificates_serial", "serial", unique=True),
)

# Nonces already consumed. Nonces are minted without a write (HMAC-signed with their time), so a replay
# is caught by this table's primary key, and rows older than a nonce's lifetime are pruned.
ACME_USED_NONCES = Table(
    "acme_used_nonces", METADATA,
    primary("nonce", String(64)),
    required("minted", Integer),  # Unix seconds, from the nonce itself
    Index("ix_acme_used_nonces_minted", "minted"),
)
