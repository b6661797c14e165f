"""Certificate profiles as data: what each kind of certificate carries, decided once.

The server profile follows the CA/Browser Forum baseline requirements: subjectAltName always,
digitalSignature (plus keyEncipherment for RSA, for TLS 1.2 RSA key exchange), serverAuth, CA:FALSE.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier


@dataclass(frozen=True)
class Profile:
    """One kind of certificate: its constraints, usages and longest allowed lifetime."""

    name: str
    is_ca: bool
    extended_key_usages: tuple[ObjectIdentifier, ...] = ()
    path_length: int | None = None
    max_validity: timedelta = timedelta(days=398)
    requires_names: bool = False

    # The extension values are immutable and depend only on the profile (and the key type), so they are
    # built once per profile: a CA issuing many leaves should pay for signing, not for rebuilding constants.
    # (cached_property, not functools.cache: hashing the dataclass on every lookup costs more than it saves.)
    def key_usage(self, public_key: object) -> x509.KeyUsage:
        return self._rsa_key_usage if isinstance(public_key, rsa.RSAPublicKey) else self._other_key_usage

    def basic_constraints(self) -> x509.BasicConstraints:
        return self._basic_constraints

    def extended_key_usage(self) -> x509.ExtendedKeyUsage | None:
        return self._extended_key_usage

    def _make_key_usage(self, rsa_key: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            # keyEncipherment only where TLS 1.2 RSA key exchange can use it: RSA leaves.
            key_encipherment=rsa_key and not self.is_ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=self.is_ca,
            crl_sign=self.is_ca,
            encipher_only=False,
            decipher_only=False,
        )

    @functools.cached_property
    def _rsa_key_usage(self) -> x509.KeyUsage:
        return self._make_key_usage(True)

    @functools.cached_property
    def _other_key_usage(self) -> x509.KeyUsage:
        return self._make_key_usage(False)

    @functools.cached_property
    def _basic_constraints(self) -> x509.BasicConstraints:
        return x509.BasicConstraints(ca=self.is_ca, path_length=self.path_length if self.is_ca else None)

    @functools.cached_property
    def _extended_key_usage(self) -> x509.ExtendedKeyUsage | None:
        return x509.ExtendedKeyUsage(list(self.extended_key_usages)) if self.extended_key_usages else None


TLS_SERVER = Profile(
    "tls-server",
    is_ca=False,
    extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
    requires_names=True,
)
TLS_CLIENT = Profile(
    "tls-client",
    is_ca=False,
    extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    max_validity=timedelta(days=3650),
)
# A printer's own certificate: a server leaf that is its own issuer. Devices keep it for years (a new
# one breaks every client that trusted the old), so its lifetime is bounded by the device flow, not 398 d.
SELF_SIGNED_DEVICE = Profile(
    "self-signed-device",
    is_ca=False,
    extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
    max_validity=timedelta(days=3653),
    requires_names=True,
)
# A LAN device's certificate issued by the shop's own root (``ca issue``, ``device create --ca``). Browsers
# do not apply the public 398-day limit to a locally installed root, so the lifetime follows the device
# flow's 1-10 years; ``ca issue`` warns above Apple's 825 days.
CA_ISSUED_DEVICE = Profile(
    "ca-issued-device",
    is_ca=False,
    extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
    max_validity=timedelta(days=3653),
    requires_names=True,
)
ROOT_CA = Profile("root-ca", is_ca=True, path_length=None, max_validity=timedelta(days=7305))
INTERMEDIATE_CA = Profile("intermediate-ca", is_ca=True, path_length=0, max_validity=timedelta(days=3653))
