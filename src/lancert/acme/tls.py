"""The ACME endpoint's own TLS certificate (RFC 8555 requires HTTPS), from the service's CA.

The service's root is name-constrained to the zone and excludes every IP address, so the endpoint is
named under the zone (``acme.<zone>`` by default) and never by an address: a client reaches it by that
name (DNS, or /etc/hosts on a LAN) and trusts ``lancert service root``. The certificate is made at
every start (cheap, and never stale), written through :mod:`lancert.storage` for uvicorn (key 0600).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lancert.pki import TLS_SERVER, CertificateAuthority, SubjectNames, generate_private_key
from lancert.storage import Credential, CredentialFiles

ENDPOINT_LIFETIME = timedelta(days=90)


def default_endpoint_name(zone: str) -> str:
    return f"acme.{zone}"


def endpoint_credential(ca: CertificateAuthority, name: str, directory: Path) -> CredentialFiles:
    """Issue a server certificate for ``name`` and store it with its key in ``directory``."""
    key = generate_private_key()
    leaf = ca.issue(key.public_key(), TLS_SERVER, names=SubjectNames.parse(dns=[name]),
                    validity=ENDPOINT_LIFETIME)
    files = CredentialFiles(directory)
    files.write(Credential((leaf, *ca.chain[:-1]), key))
    return files
