"""assemble_chain: any bundle, in any order, becomes what a TLS server must send (leaf first)."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pki_test_helpers import ZONE

from lancert.pki import TLS_SERVER, CertificateAuthority, SubjectNames, assemble_chain, generate_private_key

_ROOT = CertificateAuthority.create_root("Assembly Root")
_INTER = _ROOT.create_intermediate("Assembly Intermediate")
_LEAF = _INTER.issue(
    generate_private_key().public_key(),
    TLS_SERVER,
    names=SubjectNames.parse(dns=[f"a.{ZONE}"]),
    validity=timedelta(days=30),
)
# Same subject name as the intermediate, another key: must be skipped by signature, not picked by name.
_IMPOSTOR = _ROOT.create_intermediate("Assembly Intermediate")
_OTHER_ROOT = CertificateAuthority.create_root("Unrelated Root").certificate


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_shuffled_pool_with_noise_assembles_leaf_intermediate_root(rng: random.Random) -> None:
    pool = [_ROOT.certificate, _INTER.certificate, _IMPOSTOR.certificate, _OTHER_ROOT, _LEAF]
    rng.shuffle(pool)
    assert assemble_chain(_LEAF, pool) == [_LEAF, _INTER.certificate, _ROOT.certificate]


def test_missing_root_stops_at_the_intermediate() -> None:
    assert assemble_chain(_LEAF, [_IMPOSTOR.certificate, _INTER.certificate]) == [_LEAF, _INTER.certificate]


def test_empty_pool_gives_the_leaf_alone() -> None:
    assert assemble_chain(_LEAF, []) == [_LEAF]


def test_self_signed_leaf_is_a_chain_of_one() -> None:
    assert assemble_chain(_ROOT.certificate, [_INTER.certificate, _ROOT.certificate]) == [_ROOT.certificate]


def test_a_same_named_certificate_signed_by_another_key_is_not_self_issued() -> None:
    from datetime import timedelta

    from lancert.pki import make_name
    from lancert.pki.issuing import build_certificate
    from lancert.pki.profiles import ROOT_CA
    from lancert.pki.verify import is_self_issued

    name = make_name("Same Name")
    key, other = generate_private_key(), generate_private_key()
    forged = build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=other,
                               profile=ROOT_CA, validity=timedelta(days=1))
    assert forged.subject == forged.issuer and is_self_issued(forged) is False
