"""Shared fixtures of the PKI-core tests: keys and a name-constrained CA made once per session.

RSA key generation costs up to a second on the shared 2-core machine, so keys are made once and
reused wherever a test does not need a key of its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pki_test_helpers import ZONE

from lancert.pki import CertificateAuthority, PrivateKey, generate_private_key, zone_name_constraints


@pytest.fixture(scope="session")
def ec_key() -> PrivateKey:
    return generate_private_key("ec")


@pytest.fixture(scope="session")
def rsa_key() -> PrivateKey:
    return generate_private_key("rsa", rsa_bits=2048)


# Per test, not per session (P-256 keys make them cheap): mutation testing attributes a function only to the
# tests that run it, and a session fixture runs the CA code in the first test alone.
@pytest.fixture
def root_ca() -> CertificateAuthority:
    return CertificateAuthority.create_root("Test Root", name_constraints=zone_name_constraints(ZONE))


@pytest.fixture
def intermediate_ca(root_ca: CertificateAuthority) -> CertificateAuthority:
    return root_ca.create_intermediate("Test Intermediate", validity=timedelta(days=365))
