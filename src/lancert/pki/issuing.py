"""The one place that signs certificates: self-signed device certificates, CAs, and leaves by profile.

Every flow (device, service, terminal) calls :func:`build_certificate` through the helpers here, so the
RFC 5280 and CA/Browser Forum rules (random serials, SAN, key usages, bounded lifetimes) hold everywhere.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lancert.pki import profiles
from lancert.pki.errors import InvalidName, PKIError
from lancert.pki.keys import PrivateKey, PublicKey, check_key_strength, generate_private_key
from lancert.pki.names import SubjectNames
from lancert.pki.profiles import Profile

# Clocks of small devices drift; a minute of backdating (as step-ca does) keeps a fresh certificate from
# being "not yet valid" on a peer whose clock is slightly behind.
BACKDATE = timedelta(minutes=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


# RFC 5280 ub-common-name: a longer CN does not encode (cryptography refuses it).
def served_chain(leaf: x509.Certificate, issuers: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """What a TLS server sends, and what every lancert flow stores and hands out as a certificate chain:
    ``leaf``, then the CA certificates above it nearest first, without the root.

    ``issuers``: a CA's :attr:`CertificateAuthority.chain` (itself, its parents, the root last), or what
    an ACME CA sent after the leaf. A self-issued certificate (subject equal to issuer: RFC 5280's
    definition, 6.1) is a root, left out: a client must already hold it as its trust anchor, and one
    sent with the chain only costs bytes in every handshake (RFC 8446 4.4.2 lets a server omit it). A
    cross-signed CA (subject differs from its issuer) is kept. The one place chains are assembled, for
    the service's issuers, ``ca issue``, the ACME endpoint, the terminal and ``up``.
    """
    return (leaf, *(c for c in issuers if c.subject != c.issuer))


MAX_COMMON_NAME = 64


def make_name(
    common_name: str | None, organization: str | None = None, organizational_unit: str | None = None
) -> x509.Name:
    """A subject of an optional O, OU and CN; a CN over 64 characters is refused rather than truncated.

    Truncating would leave a CN that is none of the certificate's names, which the baseline
    requirements forbid (a CN must repeat one subjectAltName value). The OU (a CA's maker,
    ``user@host``) is cut to its 64-character upper bound (RFC 5280 ub-organizational-unit-name).
    """
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if organizational_unit:
        ou = organizational_unit[:MAX_COMMON_NAME]
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    if common_name:
        if len(common_name) > MAX_COMMON_NAME:
            raise InvalidName(f"common name longer than {MAX_COMMON_NAME} characters: {common_name[:20]!r}…")
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def default_common_name(names: SubjectNames) -> str | None:
    """The first name short enough for a CN, or none: the subject may then be empty (SAN goes critical)."""
    for dns in names.dns:
        if len(dns) <= MAX_COMMON_NAME:
            return dns
    return str(names.ips[0]) if names.ips else None  # an address is at most 39 characters


def zone_name_constraints(zone: str) -> x509.NameConstraints:
    """Constraints that limit a CA to names under ``zone`` and forbid IP addresses altogether.

    Trusting such a root cannot be abused to intercept any other site, which is what makes it acceptable
    to ask shops to install it.
    """
    return x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(zone.lower().rstrip("."))],
        excluded_subtrees=[
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ],
    )


def authority_key_identifier(
    issuer_key: PrivateKey, issuer_certificate: x509.Certificate | None = None
) -> x509.AuthorityKeyIdentifier:
    """The AKI a certificate signed by ``issuer_key`` carries: the issuer's own SKI when it has one.

    RFC 5280 4.2.1.1 says the AKI keyIdentifier is the issuer's subjectKeyIdentifier; copying it (rather
    than recomputing a SHA-1 of the key) keeps chains building under CAs made by other tools, whose SKI
    may use another method (RFC 7093 truncated SHA-256, for one).
    """
    if issuer_certificate is not None:
        try:
            ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            pass
        else:
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


_SHA256, _SHA384 = hashes.SHA256(), hashes.SHA384()


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return _SHA384
    return _SHA256


def build_certificate(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    profile: Profile,
    names: SubjectNames = SubjectNames(),  # noqa: B008 - immutable
    validity: timedelta,
    not_before: datetime | None = None,
    name_constraints: x509.NameConstraints | None = None,
    authority_key_id: x509.AuthorityKeyIdentifier | None = None,
    signature_hash: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """Sign one certificate of ``profile``; the only call to ``CertificateBuilder.sign`` in lancert.

    ``authority_key_id`` and ``signature_hash`` let a CA that issues many certificates compute them once
    instead of per certificate; by default both are derived from ``issuer_key``.
    """
    check_key_strength(public_key)
    if profile.requires_names and not names:
        raise InvalidName(f"a {profile.name} certificate needs at least one DNS name or IP address")
    if not names and len(subject) == 0:
        raise InvalidName("a certificate needs a subject name or at least one DNS name or IP address")
    if validity <= timedelta(0):
        raise PKIError("validity must be positive")
    if validity > profile.max_validity:
        raise PKIError(f"validity of {validity.days} days exceeds the {profile.name} maximum of "
                       f"{profile.max_validity.days} days")
    start = not_before if not_before is not None else utcnow() - BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        # 159 random bits: above the 64 bits of entropy the baseline requirements ask for.
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(profile.basic_constraints(), critical=True)
        .add_extension(profile.key_usage(public_key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # Also on self-signed certificates (RFC 5280 allows it; BR 7.1.2.1 wants keyid == SKI there):
        # cryptography's RFC 5280 verifier refuses an end-entity without AKI even when it is its own
        # trust anchor, as a printer's self-signed certificate is.
        .add_extension(authority_key_id or authority_key_identifier(issuer_key), critical=False)
    )
    eku = profile.extended_key_usage()
    if eku is not None:
        builder = builder.add_extension(eku, critical=False)
    if names:
        # RFC 5280 4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names.general_names()), critical=len(subject) == 0
        )
    if name_constraints is not None:
        if not profile.is_ca:
            raise PKIError("name constraints belong on CA certificates only")
        builder = builder.add_extension(name_constraints, critical=True)
    return builder.sign(issuer_key, signature_hash or _signature_hash(issuer_key))


def self_signed_certificate(
    key: PrivateKey,
    names: SubjectNames,
    *,
    common_name: str | None = None,
    validity: timedelta,
    profile: Profile = profiles.SELF_SIGNED_DEVICE,
) -> x509.Certificate:
    """A certificate that is its own issuer, as a printer makes for itself (CN defaults to first name)."""
    name = make_name(common_name or default_common_name(names))
    return build_certificate(
        subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
        profile=profile, names=names, validity=validity,
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key, with the certificates above it (empty for a root)."""

    certificate: x509.Certificate
    key: PrivateKey
    parents: tuple[x509.Certificate, ...] = field(default=())

    @functools.cached_property
    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        """Computed once per CA: issuing thousands of leaves should not re-derive it each time."""
        return authority_key_identifier(self.key, self.certificate)

    @functools.cached_property
    def _signature_hash(self) -> hashes.HashAlgorithm:
        return _signature_hash(self.key)

    @functools.cached_property
    def _not_valid_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its parents, nearest first: what a server sends after its leaf."""
        return (self.certificate, *self.parents)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @classmethod
    def create_root(
        cls,
        common_name: str,
        *,
        key: PrivateKey | None = None,
        organization: str | None = "lancert",
        organizational_unit: str | None = None,
        validity: timedelta = timedelta(days=3650),
        name_constraints: x509.NameConstraints | None = None,
    ) -> CertificateAuthority:
        key = key or generate_private_key()
        name = make_name(common_name, organization, organizational_unit)
        cert = build_certificate(
            subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
            profile=profiles.ROOT_CA, validity=validity, name_constraints=name_constraints,
        )
        return cls(cert, key)

    def create_intermediate(
        self,
        common_name: str,
        *,
        key: PrivateKey | None = None,
        organization: str | None = "lancert",
        organizational_unit: str | None = None,
        validity: timedelta = timedelta(days=1825),
        name_constraints: x509.NameConstraints | None = None,
    ) -> CertificateAuthority:
        key = key or generate_private_key()
        validity = min(validity, self.certificate.not_valid_after_utc - utcnow())
        cert = build_certificate(
            subject=make_name(common_name, organization, organizational_unit), public_key=key.public_key(),
            issuer=self.certificate.subject, issuer_key=self.key, profile=profiles.INTERMEDIATE_CA,
            validity=validity, name_constraints=name_constraints, authority_key_id=self._authority_key_id,
        )
        return CertificateAuthority(cert, key, self.chain)

    def issue(
        self,
        public_key: PublicKey,
        profile: Profile,
        *,
        names: SubjectNames = SubjectNames(),  # noqa: B008 - immutable
        common_name: str | None = None,
        validity: timedelta,
        not_before: datetime | None = None,
    ) -> x509.Certificate:
        """Issue a leaf; its lifetime never outlasts this CA's own certificate."""
        start = not_before if not_before is not None else utcnow() - BACKDATE
        validity = min(validity, self._not_valid_after - start)
        return build_certificate(
            subject=make_name(common_name or default_common_name(names)),
            public_key=public_key, issuer=self.certificate.subject, issuer_key=self.key,
            profile=profile, names=names, validity=validity, not_before=start,
            authority_key_id=self._authority_key_id, signature_hash=self._signature_hash,
        )

    def issue_for_csr(
        self,
        csr: x509.CertificateSigningRequest,
        profile: Profile,
        *,
        names: SubjectNames,
        common_name: str | None = None,
        validity: timedelta,
    ) -> x509.Certificate:
        """Issue for a CSR already loaded with :func:`lancert.pki.csr.load_csr` (signature checked).

        ``names`` is what the caller's policy allows; the CSR's own requested names are the caller's
        business to compare, so a CSR can never widen what is issued.
        """
        return self.issue(csr.public_key(), profile, names=names, common_name=common_name, validity=validity)
