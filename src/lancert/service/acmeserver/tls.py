"""The ACME endpoint's own TLS certificate (RFC 8555 requires HTTPS), from the service's CA.

The service's root is name-constrained to the zone and excludes every IP address, so the endpoint is
named under the zone (``acme.<zone>`` by default) and never by an address: a client reaches it by that
name (DNS, or /etc/hosts on a LAN) and trusts ``lancert service root``. The certificate is made at
every start (cheap, and never stale), written through :mod:`lancert.storage` for uvicorn (key 0600).
An operator may give one instead (``--acme-tls-cert/--acme-tls-key``), e.g. from a public CA for a name
clients already trust: it is checked (a chain that parses, its key) before the service starts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lancert.errors import LancertError
from lancert.pki import (
    TLS_SERVER,
    CertificateAuthority,
    PKIError,
    SubjectNames,
    generate_private_key,
    load_private_key_pem,
    public_key_matches,
    read_certificates,
    served_chain,
)
from lancert.storage.files import Credential, CredentialFiles

ENDPOINT_LIFETIME = timedelta(days=90)


def default_endpoint_name(zone: str) -> str:
    return f"acme.{zone}"


def endpoint_credential(ca: CertificateAuthority, name: str, directory: Path) -> CredentialFiles:
    """Issue a server certificate for ``name`` and store it with its key in ``directory``."""
    key = generate_private_key()
    leaf = ca.issue(key.public_key(), TLS_SERVER, names=SubjectNames.parse(dns=[name]),
                    validity=ENDPOINT_LIFETIME)
    files = CredentialFiles(directory)
    files.write(Credential(served_chain(leaf, ca.chain), key))
    return files


def given_credential(cert_path: Path, key_path: Path) -> tuple[Path, Path]:
    """An operator's certificate chain and key, checked: a one-line error rather than a TLS failure later."""
    try:
        chain = read_certificates(cert_path)
        key = load_private_key_pem(key_path.read_bytes())
    except OSError as exc:
        raise LancertError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    except PKIError as exc:
        raise LancertError(f"ACME TLS credential: {exc}") from None
    if not public_key_matches(key, chain[0].public_key()):
        raise LancertError(f"{key_path} is not the key of the first certificate in {cert_path}")
    return cert_path, key_path
