"""Key generation and PEM forms: P-256 by default, RSA on request, PKCS#1 where a peer demands it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pki_test_helpers import openssl

from lancert.pki import InvalidPEM, WeakKey, generate_private_key, load_private_key_pem, private_key_pem
from lancert.pki.keys import check_key_strength, describe_key, public_key_matches


def test_default_key_is_ecdsa_p256() -> None:
    key = generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert describe_key(key.public_key()) == "ECDSA P-256"


@pytest.mark.parametrize("bits", [2048, 3072])
def test_rsa_key_has_requested_size_and_exponent_65537(bits: int) -> None:
    key = generate_private_key("rsa", rsa_bits=bits)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == bits
    assert key.public_key().public_numbers().e == 65537
    assert describe_key(key.public_key()) == f"RSA {bits}"


@pytest.mark.parametrize("bits", [1024, 2047, 2049])
def test_rsa_key_of_unsupported_size_is_refused(bits: int) -> None:
    with pytest.raises(WeakKey, match="RSA key size"):
        generate_private_key("rsa", rsa_bits=bits)


def test_unknown_key_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="dsa"):
        generate_private_key("dsa")


@pytest.mark.slow
def test_pkcs1_pem_of_rsa_key_has_rsa_private_key_header_and_openssl_reads_it(rsa_key) -> None:
    data = private_key_pem(rsa_key, pkcs1=True)
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert data.rstrip().endswith(b"-----END RSA PRIVATE KEY-----")
    result = openssl("rsa", "-check", "-noout", stdin=data)
    assert result.returncode == 0, result.stderr
    assert b"RSA key ok" in result.stdout


def test_default_pem_is_pkcs8_and_round_trips(ec_key, rsa_key) -> None:
    for key in (ec_key, rsa_key):
        data = private_key_pem(key)
        assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")
        loaded = load_private_key_pem(data)
        assert public_key_matches(loaded, key.public_key())


def test_pkcs1_mode_gives_sec1_pem_for_ec_keys(ec_key) -> None:
    data = private_key_pem(ec_key, pkcs1=True)
    assert data.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert public_key_matches(load_private_key_pem(data), ec_key.public_key())


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_unreadable_private_key_pem_is_invalid_pem(data: bytes) -> None:
    with pytest.raises(InvalidPEM):
        load_private_key_pem(data)


def test_key_of_another_type_does_not_match(ec_key, rsa_key) -> None:
    assert not public_key_matches(ec_key, rsa_key.public_key())
    assert not public_key_matches(ec_key, generate_private_key().public_key())
    assert not public_key_matches(ec_key, object())


def test_weak_and_odd_public_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a weak key is the input under test
    with pytest.raises(WeakKey, match="1024 bits"):
        check_key_strength(weak.public_key())
    e3 = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(WeakKey, match="exponent"):
        check_key_strength(e3.public_key())
    with pytest.raises(WeakKey, match="secp256k1"):
        check_key_strength(ec.generate_private_key(ec.SECP256K1()).public_key())
    check_key_strength(ec.generate_private_key(ec.SECP384R1()).public_key())


def test_the_refusals_say_exactly_what_is_accepted() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(WeakKey) as size:
        generate_private_key("rsa", rsa_bits=1024)
    assert str(size.value) == "RSA key size must be one of 2048, 3072, 4096, not 1024"
    cases = [
        (ec.generate_private_key(ec.SECP256K1()).public_key(),
         "elliptic curve secp256k1 is not accepted (use P-256 or P-384)"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2047).public_key(),  # noqa: S505 - under test
         "RSA key of 2047 bits is too weak (minimum 2048)"),
        (rsa.generate_private_key(public_exponent=3, key_size=2048).public_key(),
         "RSA public exponent must be 65537"),
        (ed25519.Ed25519PrivateKey.generate().public_key(),
         "unsupported key type Ed25519PublicKey (use ECDSA P-256 or RSA)"),
    ]
    for public_key, message in cases:
        with pytest.raises(WeakKey) as refused:
            check_key_strength(public_key)
        assert str(refused.value) == message


def test_p256_p384_and_rsa_2048_pass_the_strength_check(ec_key, rsa_key) -> None:
    assert check_key_strength(ec_key.public_key()) is None
    assert check_key_strength(ec.generate_private_key(ec.SECP384R1()).public_key()) is None
    assert check_key_strength(rsa_key.public_key()) is None


def test_key_descriptions() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    assert describe_key(ec.generate_private_key(ec.SECP384R1()).public_key()) == "ECDSA P-384"
    assert describe_key(ec.generate_private_key(ec.SECP521R1()).public_key()) == "ECDSA P-521"
    assert describe_key(ec.generate_private_key(ec.SECP256K1()).public_key()) == "ECDSA secp256k1"
    assert describe_key(ed25519.Ed25519PrivateKey.generate().public_key()) == "Ed25519PublicKey"


def test_private_key_loading_errors_are_exact() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(InvalidPEM) as garbage:
        load_private_key_pem(b"garbage")
    assert str(garbage.value) == "not a readable unencrypted PEM private key"
    encrypted = generate_private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(InvalidPEM, match="not a readable unencrypted PEM private key"):
        load_private_key_pem(encrypted)
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidPEM) as unsupported:
        load_private_key_pem(ed)
    assert str(unsupported.value) == "unsupported private key type Ed25519PrivateKey"


def test_an_rsa_key_matches_its_own_public_key_only(rsa_key) -> None:
    assert public_key_matches(rsa_key, rsa_key.public_key())
    assert not public_key_matches(rsa_key, generate_private_key("rsa").public_key())
