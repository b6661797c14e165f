"""Errors of the PKI core. Each names what is wrong with the input, never a secret."""

from lancert.errors import LancertError


class PKIError(LancertError):
    """Base of every PKI-core failure."""


class InvalidPEM(PKIError):
    """Input that should hold a certificate, key or CSR but does not parse (garbage or truncated)."""


class InvalidCSR(PKIError):
    """A CSR that does not parse or whose self-signature does not verify."""


class WeakKey(PKIError):
    """A public key below the profile's minimum (RSA under 2048 bits, an unsupported curve)."""


class InvalidName(PKIError):
    """A DNS name or IP address that cannot go into a subjectAltName."""


class ChainError(PKIError):
    """A certificate that does not chain to the given trust anchors, with the verifier's reason."""
