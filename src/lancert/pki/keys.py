"""Key generation and (de)serialisation.

ECDSA P-256 is the default: it is what every browser and TLS stack accepts, and it is fast to make on
a small device. RSA exists for peers that demand it (PKCS#1 bundles of payment terminals, old clients).
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lancert.pki.errors import InvalidPEM, WeakKey

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

RSA_SIZES = (2048, 3072, 4096)
# NIST P-256 and P-384 are the curves the CA/Browser Forum baseline requirements allow for TLS.
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048


class KeyKind(StrEnum):
    EC = "ec"
    RSA = "rsa"


def generate_private_key(kind: KeyKind | str = KeyKind.EC, rsa_bits: int = 2048) -> PrivateKey:
    """Make a new private key: P-256 for ``ec``, RSA of ``rsa_bits`` (2048, 3072 or 4096) for ``rsa``."""
    kind = KeyKind(kind)
    if kind is KeyKind.EC:
        return ec.generate_private_key(ec.SECP256R1())
    if rsa_bits not in RSA_SIZES:
        raise WeakKey(f"RSA key size must be one of {', '.join(map(str, RSA_SIZES))}, not {rsa_bits}")
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def check_key_strength(public_key: object) -> None:
    """Refuse keys a browser would refuse, so a weak CSR fails at the service, not at the padlock."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):  # the common case first: runs per issued cert
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise WeakKey(f"elliptic curve {public_key.curve.name} is not accepted (use P-256 or P-384)")
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise WeakKey(f"RSA key of {public_key.key_size} bits is too weak (minimum {MIN_RSA_BITS})")
        if public_key.public_numbers().e != 65537:
            raise WeakKey("RSA public exponent must be 65537")
        return
    raise WeakKey(f"unsupported key type {type(public_key).__name__} (use ECDSA P-256 or RSA)")


def describe_key(public_key: object) -> str:
    """A short human name of the key type, as ``cert show`` prints it: ``ECDSA P-256``, ``RSA 2048``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            public_key.curve.name, public_key.curve.name
        )
        return f"ECDSA {curve}"
    return type(public_key).__name__


def private_key_pem(key: PrivateKey, *, pkcs1: bool = False) -> bytes:
    """PEM of an unencrypted private key: PKCS#8 by default; PKCS#1 for RSA peers that demand it.

    PKCS#1 (``BEGIN RSA PRIVATE KEY``) is what payment-terminal pairing bundles carry; EC keys use the
    traditional SEC1 form in that mode.
    """
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_private_key_pem(data: bytes) -> PrivateKey:
    """Parse an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidPEM("not a readable unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidPEM(f"unsupported private key type {type(key).__name__}")
    return key


def public_key_matches(key: PrivateKey, public_key: object) -> bool:
    """Whether ``public_key`` belongs to ``key``: a certificate and a key file that belong together."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        other = public_key.public_bytes(serialization.Encoding.DER, spki)  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return key.public_key().public_bytes(serialization.Encoding.DER, spki) == other
