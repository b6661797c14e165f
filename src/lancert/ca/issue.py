"""Device certificates from the shop's own root: ``ca issue`` and ``device create --ca``.

The mkcert model for a shop: one root installed once on every POS, and each printer or box gets a leaf
from the CA's intermediate. Replacing or renewing such a leaf (new key included) breaks nothing, because
the POS trusts the root, not the leaf: the generate-once chore of self-signed devices disappears.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from lancert.errors import LancertError
from lancert.pki import (
    CA_ISSUED_DEVICE,
    CertificateAuthority,
    InvalidName,
    PublicKey,
    SubjectNames,
    common_name,
    csr_names,
    parse_ip,
    served_chain,
)


def csr_requested_names(csr: x509.CertificateSigningRequest) -> SubjectNames:
    """The names a device's CSR asks for: its subjectAltName, else its Common Name (IP or DNS name).

    Printers' web configurations make CSRs whose only name is the CN (their IP address); a leaf still
    needs the name in subjectAltName, which browsers read instead of the CN.
    """
    names = csr_names(csr)
    if names.dns or names.ips:
        return SubjectNames(names.dns, names.ips)
    cn = common_name(csr.subject)
    if not cn:
        raise InvalidName("the CSR names nothing (no subjectAltName, no Common Name): give --ip instead")
    try:
        return SubjectNames.parse(ips=[parse_ip(cn)])
    except InvalidName:
        return SubjectNames.parse(dns=[cn])


def issue_device_certificate(
    ca: CertificateAuthority, public_key: PublicKey, names: SubjectNames, *, validity: timedelta
) -> tuple[x509.Certificate, ...]:
    """A serverAuth leaf for ``names`` and the CA certificates a server sends after it (never the root).

    The CN repeats the first address (as a printer's CN is its IP), else the first DNS name. The leaf never
    outlives the intermediate (:meth:`CertificateAuthority.issue` clamps it).
    """
    if not (names.dns or names.ips):
        raise LancertError("a device certificate needs an IP address or a DNS name")
    cn = str(names.ips[0]) if names.ips else None
    leaf = ca.issue(public_key, CA_ISSUED_DEVICE, names=names, common_name=cn, validity=validity)
    return served_chain(leaf, ca.chain)
