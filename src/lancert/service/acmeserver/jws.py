"""Signed ACME requests (RFC 8555 section 6.2): a flattened JWS, parsed and checked with josepy.

What is checked here, before any handler runs: the JSON shape (flattened serialization only, every
header protected), the algorithm (asymmetric only: an HMAC-signed request would let anyone holding
the MAC key pose as the account), the key's type and strength against that algorithm, and the
signature. Which of ``jwk``/``kid`` an endpoint needs, the nonce and the ``url`` are the protocol's
business (:mod:`lancert.service.acmeserver.protocol`), because their answers need the account store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import josepy as jose
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lancert.pki import WeakKey
from lancert.pki.keys import check_key_strength
from lancert.service.acmeserver.problems import AcmeProblem, malformed

# RFC 8555 requires ES256 and RS256 at least (clients: certbot RS256/ES256, lego ES256/RS256, Caddy
# ES256); ES384 and PS256 cost nothing more with josepy. No HS* (see above), no "none".
ALGORITHMS: dict[str, tuple[type[jose.JWK], Any]] = {
    "ES256": (jose.JWKEC, ec.SECP256R1),
    "ES384": (jose.JWKEC, ec.SECP384R1),
    "RS256": (jose.JWKRSA, None),
    "PS256": (jose.JWKRSA, None),
}
_FLATTENED = {"protected", "payload", "signature"}
# The protected header's members of RFC 8555 6.2, the only ones every client sends. They are decoded one
# by one with the decoders of josepy's own ``acme.jws.Header`` fields (``alg`` from the registry of
# algorithms, the nonce's base64url, ``jwk`` into a key); a header with any other member (``x5c``, ``typ``,
# ``crit``...) goes through the whole ``Header.from_json`` first, which decodes what it knows and refuses
# ``crit``. Building that Header object for every request cost as much as the ECDSA verification.
_ACME_MEMBERS = frozenset({"alg", "nonce", "url", "kid", "jwk"})
_DECODE = {name: acme_jws.Header._fields[name].decode for name in ("alg", "nonce", "jwk")}


@dataclass(frozen=True, slots=True)
class ProtectedHeader:
    """What a signed request's protected header says, decoded (``nonce``: its bytes)."""

    alg: jose.JWASignature
    nonce: bytes | None
    url: str | None
    kid: str | None
    jwk: jose.JWK | None


@dataclass(frozen=True)
class SignedRequest:
    """A parsed JWS whose signature is not yet verified (the key may come from the account store).

    Decoded once: the protected header is read and checked by :func:`parse_document`, its members
    decoded from that same dict; ``payload`` and ``signature`` are decoded once, and ``signing_input``
    is what the signature covers. josepy's own ``JWS.from_json`` would decode the protected header a
    second time, merge it with an empty unprotected header into a third ``Header`` and re-encode header
    and payload at every ``verify``: 14% of the app's CPU per signed request (``bench/acme_inprocess.py``
    under py-spy).
    """

    header: ProtectedHeader
    payload: bytes
    signature: bytes
    signing_input: bytes

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object; ``{}`` never stands for POST-as-GET (that is ``b""``)."""
        value = loads(self.payload, "the JWS payload")
        if not isinstance(value, dict):
            raise malformed("the JWS payload must be a JSON object")
        return value

    @property
    def is_post_as_get(self) -> bool:
        return self.payload == b""

    def signed_by(self, key: jose.JWK) -> bool:
        """Whether the signature is ``key``'s under the header's algorithm (josepy's JWA verifies)."""
        try:
            return bool(self.header.alg.verify(key=key.key, msg=self.signing_input, sig=self.signature))
        except Exception:  # josepy raises on keys/signatures it cannot use; all mean "not verified"
            return False

    def verify(self, key: jose.JWK) -> None:
        """The signature is ``key``'s, with an algorithm that fits the key; else ``malformed``."""
        check_key_fits(key, self.header.alg.name)
        if not self.signed_by(key):
            raise malformed("JWS signature verification failed")


def loads(raw: bytes | str, what: str) -> Any:
    """JSON from a client, refused with ``malformed`` whatever is wrong with it: not UTF-8, not JSON,
    or nested so deep that the decoder gives up (``RecursionError``; a 64 KiB body of ``[`` does it)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise malformed(f"{what} is not UTF-8 JSON of a sane depth") from None


def parse(body: bytes) -> SignedRequest:
    """A flattened JWS with an allowed algorithm and every header in the protected part."""
    return parse_document(loads(body, "the request body"), "the request body", ALGORITHMS)


def parse_document(document: Any, what: str, algorithms: Mapping[str, object]) -> SignedRequest:
    """``document`` (decoded JSON) as a flattened JWS whose protected header is checked field by field
    before josepy sees it: josepy trusts the types of ``alg``, ``nonce``, ``url``, ``kid`` and ``jwk``
    and raises ``KeyError``/``AttributeError``/``TypeError`` on others, which would be a 500."""
    if not isinstance(document, dict) or set(document) != _FLATTENED:
        raise malformed(f"{what} must be a flattened JWS: protected, payload, signature")
    if not all(isinstance(document[k], str) for k in _FLATTENED):
        raise malformed(f"{what}: protected, payload and signature must be base64url strings")
    try:
        protected_raw = jose.b64decode(document["protected"])
    except (ValueError, TypeError):
        raise malformed(f"{what}: the protected header is not base64url") from None
    try:
        protected_text = protected_raw.decode("utf-8")  # RFC 7515 5.2: UTF-8, not json's UTF-16/32 guess
    except UnicodeDecodeError:
        raise malformed(f"{what}'s protected header is not UTF-8") from None
    protected = loads(protected_text, f"{what}'s protected header")
    if not isinstance(protected, dict):
        raise malformed(f"{what}'s protected header must be a JSON object")
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise bad_algorithm(alg, algorithms)
    for name in ("nonce", "url", "kid"):
        if name in protected and not isinstance(protected[name], str):
            raise malformed(f"{what}: the protected header's {name} must be a string")
    if "jwk" in protected and not isinstance(protected["jwk"], dict):
        raise malformed(f"{what}: the protected header's jwk must be a JSON object")
    try:
        if not _ACME_MEMBERS.issuperset(protected):
            acme_jws.Header.from_json(protected)  # only for josepy's checks of the other members
        header = ProtectedHeader(
            alg=_DECODE["alg"](alg),
            nonce=_DECODE["nonce"](protected["nonce"]) if "nonce" in protected else None,
            url=protected.get("url"), kid=protected.get("kid"),
            jwk=_DECODE["jwk"](protected["jwk"]) if "jwk" in protected else None,
        )
        payload = jose.decode_b64jose(document["payload"])
        signature = jose.decode_b64jose(document["signature"])
    except Exception as exc:  # josepy's decoders raise more than DeserializationError on odd keys
        raise malformed(f"{what}: the JWS does not parse: {str(exc)[:200]}") from None
    if (header.jwk is None) == (header.kid is None):
        raise malformed(f"{what}: the protected header must carry exactly one of jwk and kid")
    if header.url is None:
        raise malformed(f"{what}: the protected header has no url")
    # What josepy's Signature.verify signs over: both parts base64url-encoded again from their bytes,
    # so a part sent with padding or stray characters verifies (or not) exactly as it did through josepy.
    signing_input = jose.b64encode(protected_raw) + b"." + jose.b64encode(payload)
    return SignedRequest(header, payload, signature, signing_input)


def bad_algorithm(alg: object, algorithms: Mapping[str, object] = ALGORITHMS) -> AcmeProblem:
    """RFC 8555 6.2: ``badSignatureAlgorithm`` with the ``algorithms`` we take, also for ``none``,
    an unknown name or a ``alg`` that is not a string at all."""
    shown = alg[:20] if isinstance(alg, str) else type(alg).__name__
    return AcmeProblem(
        "badSignatureAlgorithm",
        f"JWS algorithm {shown!r} is not supported",
        extra={"algorithms": list(algorithms)},
    )


def check_account_key(key: jose.JWK) -> None:
    """An account key must be a public EC (P-256/P-384) or RSA (2048+) key: ``badPublicKey`` else."""
    # josepy wraps keys in a ComparableKey proxy; the cryptography object is inside.
    is_asymmetric = isinstance(key, jose.JWKEC | jose.JWKRSA)
    public = getattr(key.public_key().key, "_wrapped", None) if is_asymmetric else None
    if public is None or not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise AcmeProblem("badPublicKey", "account keys must be EC (P-256, P-384) or RSA public keys")
    try:
        check_key_strength(public)
    except WeakKey as exc:
        raise AcmeProblem("badPublicKey", str(exc)) from None


def check_key_fits(key: jose.JWK, alg: str) -> None:
    kty, curve = ALGORITHMS[alg]
    if not isinstance(key, kty) or (curve is not None and not isinstance(key.key.curve, curve)):
        raise malformed(f"the key does not fit the JWS algorithm {alg}")


def thumbprint(key: jose.JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: what makes a key one account."""
    return jose.b64encode(key.thumbprint()).decode()
