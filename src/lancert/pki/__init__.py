"""The PKI core: everything in lancert that touches X.509 goes through this package.

Flows import from here, never from ``cryptography.x509`` builders directly, so the profile rules
(SAN, key usages, random serials, bounded lifetimes) are decided in one place.
"""

from lancert.pki.csr import create_csr, csr_names, load_csr
from lancert.pki.errors import ChainError, InvalidCSR, InvalidName, InvalidPEM, PKIError, WeakKey
from lancert.pki.formats import (
    CertFormat,
    export_certificate,
    load_certificates,
    load_pkcs12,
    pem,
    read_certificate,
    read_certificates,
)
from lancert.pki.inspect import CertificateSummary, days_left, fingerprint_sha256, summarize, validity_status
from lancert.pki.issuing import (
    CertificateAuthority,
    authority_key_identifier,
    build_certificate,
    default_common_name,
    make_name,
    self_signed_certificate,
    served_chain,
    utcnow,
    zone_name_constraints,
)
from lancert.pki.keys import (
    KeyKind,
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key_pem,
    private_key_pem,
    public_key_matches,
)
from lancert.pki.names import SubjectNames, certificate_names, common_name, normalize_dns_name, parse_ip
from lancert.pki.profiles import (
    CA_ISSUED_DEVICE,
    INTERMEDIATE_CA,
    ROOT_CA,
    SELF_SIGNED_DEVICE,
    TLS_CLIENT,
    TLS_SERVER,
    Profile,
)
from lancert.pki.verify import assemble_chain, is_self_issued, verify_client_chain, verify_server_chain

__all__ = [
    "CA_ISSUED_DEVICE", "INTERMEDIATE_CA", "ROOT_CA", "SELF_SIGNED_DEVICE", "TLS_CLIENT", "TLS_SERVER",
    "CertFormat", "CertificateAuthority", "CertificateSummary", "ChainError", "InvalidCSR", "InvalidName",
    "InvalidPEM", "KeyKind", "PKIError", "PrivateKey", "Profile", "PublicKey", "SubjectNames", "WeakKey",
    "assemble_chain", "authority_key_identifier", "build_certificate", "certificate_names", "common_name",
    "create_csr", "csr_names", "days_left", "default_common_name", "export_certificate",
    "fingerprint_sha256", "generate_private_key", "is_self_issued", "load_certificates", "load_csr",
    "load_pkcs12",
    "load_private_key_pem", "make_name", "normalize_dns_name", "parse_ip", "pem", "private_key_pem",
    "public_key_matches", "read_certificate", "read_certificates", "self_signed_certificate", "served_chain",
    "summarize",
    "utcnow", "validity_status", "verify_client_chain", "verify_server_chain", "zone_name_constraints",
]
