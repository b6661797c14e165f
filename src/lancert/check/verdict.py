"""The padlock verdict: would a browser show a secure connection for this URL, and if not, why not.

The served chain is fetched unverified (:mod:`lancert.trust.fetch`), then judged against one trust
source — a ``--ca`` file, an NSS database as Chromium reads it (as Firefox does when it is a Firefox
profile: the two disagree on a device's own certificate, see :mod:`lancert.trust.nss`), or the system
anchors. Every reason is collected independently (a certificate can be expired *and* for another name
*and* untrusted), and cryptography's RFC 5280 verifier (:func:`lancert.pki.verify_server_chain`) has the
last word, so a defect the diagnostics do not name still cannot yield a padlock.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from lancert.errors import LancertError
from lancert.pki import (
    ChainError,
    assemble_chain,
    certificate_names,
    common_name,
    is_self_issued,
    read_certificates,
    summarize,
    utcnow,
    verify_server_chain,
)
from lancert.trust.fetch import HandshakeError, Target, served_chain
from lancert.trust.java import JavaStore
from lancert.trust.nss import NssStore, is_firefox_profile, nss_databases
from lancert.trust.store import is_ca
from lancert.trust.system import bundle_certificates

SYSTEM_BUNDLE_FALLBACK = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Reason:
    """One cause of a browser warning: a stable ``code`` for scripts and a sentence for people."""

    code: str
    message: str


@dataclass(frozen=True)
class TrustSource:
    """What a browser would trust: anchors (CAs, NSS ``C``) and directly trusted leaves (NSS ``P``).

    ``firefox``: judge as Firefox does (a Firefox profile's database), not as Chromium does.
    """

    description: str
    anchors: tuple[x509.Certificate, ...] = ()
    trusted_leaves: tuple[x509.Certificate, ...] = ()
    firefox: bool = False
    # The command that puts a certificate where this source reads it (the advice of a refusal).
    install_hint: str = "lancert trust install FILE --store nss"

    @classmethod
    def from_ca_file(cls, path: Path) -> TrustSource:
        """CAs in the file become anchors; other certificates (a device's own) are trusted as leaves.

        That mirrors ``trust install``, which gives a device certificate ``P`` trust, so
        ``check --ca printer.crt`` answers "would the padlock show once this file is installed".
        """
        certs = read_certificates(path)
        return cls(
            f"--ca {path}",
            tuple(c for c in certs if is_ca(c)),
            tuple(c for c in certs if not is_ca(c)),
        )

    @classmethod
    def from_nssdb(cls, directory: Path) -> TrustSource:
        store = NssStore(directory)
        if not store.exists():
            raise LancertError(f"{directory}: not an NSS database (no cert9.db)")
        anchors, leaves = store.trusted()
        # `trust install --store nss` covers the databases it finds (Chrome's, every Firefox profile in a
        # profiles.ini); any other directory needs naming.
        found = {s.directory.resolve() for s in nss_databases(Path.home())}
        hint = "lancert trust install FILE --store nss"
        if directory.resolve() not in found:
            hint += f" --nssdb {directory}"
        if is_firefox_profile(directory):
            return cls(f"Firefox profile {directory}", tuple(anchors), tuple(leaves), firefox=True,
                       install_hint=hint)
        return cls(f"NSS database {directory}", tuple(anchors), tuple(leaves), install_hint=hint)

    @classmethod
    def from_keystore(cls, keystore: Path, storepass: str) -> TrustSource:
        """What a Java client with this trust store (``-Djavax.net.ssl.trustStore``) accepts: every
        trustedCertEntry, a CA as an anchor and a device's own certificate as itself (the JDK's PKIX
        validator accepts a server whose certificate is a trusted entry; see :mod:`lancert.trust.java`)."""
        if not keystore.is_file():
            raise LancertError(f"{keystore}: no such keystore")
        certs = JavaStore(keystore, storepass).trusted_certificates()
        return cls(f"Java keystore {keystore}", tuple(c for c in certs if is_ca(c)),
                   tuple(c for c in certs if not is_ca(c)),
                   install_hint=f"lancert trust install FILE --store java --keystore {keystore}")

    @classmethod
    def system(cls) -> TrustSource:
        """The OS bundle OpenSSL uses (``ssl`` default paths), as curl and Python clients see it."""
        paths = ssl.get_default_verify_paths()
        for candidate in (paths.cafile, paths.openssl_cafile, str(SYSTEM_BUNDLE_FALLBACK)):
            if candidate and Path(candidate).is_file():
                certs = bundle_certificates(Path(candidate).read_bytes())
                return cls(f"system trust {candidate}", tuple(c for c in certs if is_ca(c)),
                           tuple(c for c in certs if not is_ca(c)),
                           install_hint="lancert trust install FILE --store system")
        raise LancertError("no system CA bundle found; pass --ca FILE or --nssdb DIR")


@dataclass
class Verdict:
    target: Target
    chain: list[x509.Certificate]
    trust: TrustSource
    reasons: list[Reason] = field(default_factory=list)

    @property
    def secure(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.target.host,
            "port": self.target.port,
            "connected_to": self.target.connect_host,
            "secure": self.secure,
            "trust_source": self.trust.description,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "chain": [summarize(c).as_dict() for c in self.chain],
        }


def _label(cert: x509.Certificate) -> str:
    return common_name(cert.subject) or cert.subject.rfc4514_string() or "(empty subject)"


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125 as browsers apply it: exact, or one ``*`` as the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2
    return False


def name_reasons(leaf: x509.Certificate, host: str) -> list[Reason]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [Reason("no-subject-alt-name",
                       f"the certificate has no subjectAltName; browsers ignore the Common Name "
                       f"({_label(leaf)}) since Chrome 58, so it matches no name")]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        ok = ip in san.get_values_for_type(x509.IPAddress)
    else:
        ok = any(_dns_matches(p, host) for p in san.get_values_for_type(x509.DNSName))
    if ok:
        return []
    names = ", ".join(certificate_names(leaf).as_strings()) or "no usable name"
    kind = "IP address" if ip is not None else "name"
    return [Reason("name-mismatch", f"the certificate is for {names}, not the {kind} {host}")]


def validity_reasons(chain: list[x509.Certificate], at: datetime) -> list[Reason]:
    reasons = []
    for position, cert in enumerate(chain):
        what = "the certificate" if position == 0 else f"the chain certificate {_label(cert)}"
        if at > cert.not_valid_after_utc:
            end = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}"
            reasons.append(Reason("expired", f"{what} expired on {end} UTC"))
        elif at < cert.not_valid_before_utc:
            start = f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
            reasons.append(Reason("not-yet-valid",
                                  f"{what} is not valid before {start} UTC "
                                  "(or this machine's clock is wrong)"))
    return reasons


def usage_reasons(leaf: x509.Certificate) -> list[Reason]:
    reasons = []
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        have = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku) or "empty"
        reasons.append(Reason("wrong-extended-key-usage",
                              f"extended key usage is {have}; a TLS server certificate needs serverAuth"))
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None:
        ok = ku.digital_signature or (isinstance(leaf.public_key(), rsa.RSAPublicKey) and ku.key_encipherment)
        if not ok:
            reasons.append(Reason("wrong-key-usage",
                                  "key usage lacks digitalSignature, which a TLS server key needs to sign "
                                  "the handshake"))
    return reasons


def _chromium_leaf_trust(leaf: x509.Certificate, trust: TrustSource) -> tuple[list[Reason], bool] | None:
    if leaf in trust.trusted_leaves or (leaf in trust.anchors and is_ca(leaf)):
        return [], True
    if leaf in trust.anchors:
        # Chromium 156 answers ERR_CERT_INVALID for a CA:FALSE certificate given NSS "C" trust.
        message = (f"the certificate is trusted as a CA by {trust.description} but is not one (CA:FALSE), "
                   f"which Chromium rejects; reinstall it: {trust.install_hint}")
        return [Reason("end-entity-trusted-as-ca", message)], False
    return None


def _firefox_leaf_trust(leaf: x509.Certificate, trust: TrustSource) -> tuple[list[Reason], bool] | None:
    """Firefox 153 (mozilla::pkix): only ``C`` trusts a certificate, and a CA is never a site's own."""
    if leaf in trust.anchors and is_ca(leaf):
        message = (f"the certificate is a CA (CA:TRUE) serving as the site's own; Firefox refuses that "
                   f"whatever {trust.description} trusts (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY): "
                   "the device needs a CA:FALSE certificate")
        return [Reason("ca-certificate-as-end-entity", message)], False
    if leaf in trust.anchors:
        return [], True
    if leaf in trust.trusted_leaves and is_self_issued(leaf):
        message = (f"the certificate is trusted only as a peer (NSS P) by {trust.description}, which Firefox "
                   f"ignores (MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT); reinstall it: {trust.install_hint}")
        return [Reason("peer-trust-only", message)], False
    return None


def trust_reasons(chain: list[x509.Certificate], trust: TrustSource) -> tuple[list[Reason], bool]:
    """Reasons the chain is not trusted, and whether the leaf itself is trusted directly."""
    leaf = chain[0]
    direct = (_firefox_leaf_trust if trust.firefox else _chromium_leaf_trust)(leaf, trust)
    if direct is not None:
        return direct
    path = assemble_chain(leaf, [*chain[1:], *trust.anchors])
    if any(c in trust.anchors for c in path):
        return [], False
    if len(path) == 1 and is_self_issued(leaf):
        return [Reason("self-signed-untrusted",
                       f"the certificate is self-signed and not trusted by {trust.description}; "
                       f"install it with: {trust.install_hint}")], False
    top = path[-1]
    issuer = _label(top) if is_self_issued(top) else top.issuer.rfc4514_string()
    return [Reason("untrusted-issuer", f"the issuer {issuer} is not trusted by {trust.description}")], False


def evaluate(
    chain: list[x509.Certificate], host: str, trust: TrustSource, at: datetime | None = None
) -> list[Reason]:
    """Every reason a browser would not show a padlock for ``chain`` served as ``host``; [] means secure."""
    now = at or utcnow()
    leaf = chain[0]
    reasons, direct = trust_reasons(chain, trust)
    reasons = [*reasons, *name_reasons(leaf, host), *validity_reasons(chain, now), *usage_reasons(leaf)]
    if not reasons and not direct:
        try:
            verify_server_chain(leaf, anchors=list(trust.anchors), host=host, intermediates=chain[1:], at=now)
        except ChainError as exc:
            reasons.append(Reason("chain-invalid", f"the chain does not verify: {exc}"))
    return reasons


def check_target(target: Target, trust: TrustSource, *, timeout: float = 10.0) -> Verdict:
    """Connect (unreachable raises :class:`~lancert.trust.fetch.UnreachableError`) and judge the chain."""
    try:
        chain = served_chain(target, timeout=timeout)
    except HandshakeError as exc:
        return Verdict(target, [], trust, [Reason("tls-handshake-failed", str(exc))])
    return Verdict(target, chain, trust, evaluate(chain, target.host, trust))
