"""The authority in-process, over a real SQLite registry: who is eligible, which label, which names.

The rule (docs/service.md, eligibility): a certificate only for a production database whose subscription is
"in progress" with an IoT box line. Every kind and every subscription status is tried, so a rule written as
"refuse closed" instead of "allow only in progress" fails here. The end-to-end answers (HTTP status, the
compatible call's shape) are in test_service_eligibility.py.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator

import pytest

import lancert.service.registry as registry_module
from lancert.pki import SubjectNames
from lancert.service.authority import Authority, Grant
from lancert.service.database import Database
from lancert.service.errors import NameNotAllowed, NotEligible, RateLimited
from lancert.service.ratelimit import FailedCredentialLimiter, RateLimits
from lancert.service.registry import DatabaseKind, Registry, SubscriptionStatus


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows stored with scrypt N=2^10 instead of 2^14 (each hash carries its parameters, so verifying
    follows them): these tests add dozens of rows, and the mutation run repeats them per mutant. The
    production cost is pinned by test_a_code_hash_is_scrypt_with_its_parameters_and_a_16_byte_salt."""
    monkeypatch.setattr(registry_module, "hash_code", functools.partial(registry_module.hash_code, n=2**10))


CODE = "correct horse battery staple"
ZONE = "iot.lancert.test"

# The values of the command surface (`service db add --kind ... --subscription ...`), written out.
KINDS = ["production", "staging", "duplicate", "development"]
STATUSES = ["draft", "in_progress", "paused", "closed", "cancelled"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('authority') / 'service.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def registry(database: Database) -> Registry:
    return Registry(database)


def authority_over(registry: Registry, *, secret: bytes = b"s" * 32, **limits: int) -> Authority:
    limiter = FailedCredentialLimiter(registry.database, RateLimits(**limits))
    return Authority(registry, limiter, zone=ZONE, label_secret=secret)


@pytest.fixture
def authority(registry: Registry) -> Authority:
    """Per test (cheap), so every test runs the constructor (mutation testing attributes it per test)."""
    return authority_over(registry, failures_per_ip=10_000, failures_per_database=10_000)


_counter = itertools.count()


def new_database(registry: Registry, **options: object) -> str:
    uuid = f"authority-db-{next(_counter)}"
    registry.add(uuid, CODE, **options)  # type: ignore[arg-type]
    return uuid


def refusal(authority: Authority, uuid: str, code: str = CODE, box_id: str | None = "box") -> str | None:
    """The refusal reason, or None when the authority grants."""
    try:
        authority.authorize(uuid, code, box_id=box_id, source_ip="127.0.0.1")
    except NotEligible as refused:
        return refused.reason
    return None


def test_the_command_surface_values_are_the_registry_values() -> None:
    assert sorted(KINDS) == sorted(kind.value for kind in DatabaseKind)
    assert set(STATUSES) <= {status.value for status in SubscriptionStatus}


def test_only_production_in_progress_with_an_iot_line_is_granted(
    authority: Authority, registry: Registry
) -> None:
    """Every combination of kind, status (those of the command surface and any the code adds) and line."""
    uuid = new_database(registry)  # one row, changed in place: its code is verified by scrypt only once
    statuses = sorted(set(STATUSES) | {status.value for status in SubscriptionStatus})
    for kind, status, line in itertools.product(KINDS, statuses, [True, False]):
        registry.set(
            uuid, kind=DatabaseKind(kind), subscription=SubscriptionStatus(status), iot_box_line=line
        )
        expected = (
            "not_production" if kind != "production"
            else "subscription_not_in_progress" if status != "in_progress"
            else "no_iot_box_line" if not line
            else None
        )
        assert refusal(authority, uuid) == expected, (kind, status, line)


@pytest.mark.parametrize("status", ["draft", "paused", "closed", "cancelled"])
def test_a_subscription_not_in_progress_is_refused_with_its_message(
    authority: Authority, registry: Registry, status: str
) -> None:
    uuid = new_database(registry, subscription=SubscriptionStatus(status))
    with pytest.raises(NotEligible) as refused:
        authority.authorize(uuid, CODE, box_id=None, source_ip="127.0.0.1")
    assert refused.value.body() == {
        "error": {
            "code": "not_eligible",
            "reason": "subscription_not_in_progress",
            "message": "the subscription is not in progress",
        }
    }


@pytest.mark.parametrize("kind", ["staging", "duplicate", "development"])
def test_a_database_that_is_not_production_is_refused_with_its_message(
    authority: Authority, registry: Registry, kind: str
) -> None:
    uuid = new_database(registry, kind=DatabaseKind(kind))
    with pytest.raises(NotEligible) as refused:
        authority.authorize(uuid, CODE, box_id=None, source_ip="127.0.0.1")
    assert refused.value.reason == "not_production"
    assert "not a production database" in str(refused.value)


def test_a_missing_iot_line_names_the_fix(authority: Authority, registry: Registry) -> None:
    uuid = new_database(registry, iot_box_line=False)
    with pytest.raises(NotEligible) as refused:
        authority.authorize(uuid, CODE, box_id="box", source_ip="127.0.0.1")
    assert refused.value.reason == "no_iot_box_line"
    assert str(refused.value).startswith("the subscription has no IoT box line; add one")


def test_unknown_database_and_wrong_code_are_the_same_refusal(
    authority: Authority, registry: Registry
) -> None:
    uuid = new_database(registry)
    assert refusal(authority, "no-such-database") == "unknown_database_or_code"
    assert refusal(authority, uuid, code="wrong code") == "unknown_database_or_code"
    assert refusal(authority, uuid, code=CODE.upper()) == "unknown_database_or_code"
    assert refusal(authority, uuid) is None


def test_a_grant_is_for_the_box_s_own_wildcard(authority: Authority, registry: Registry) -> None:
    uuid = new_database(registry)
    grant = authority.authorize(uuid, CODE, box_id="kitchen", source_ip="127.0.0.1")
    assert (grant.database.uuid, grant.box_id, grant.zone) == (uuid, "kitchen", ZONE)
    assert re.fullmatch(r"[a-z2-7]{12}", grant.box_label)
    assert grant.box_label == authority.box_label(uuid, "kitchen")
    assert grant.hostname_pattern == f"*.{grant.box_label}.{ZONE}"
    assert grant.names == SubjectNames.parse(dns=[f"*.{grant.box_label}.{ZONE}"])


def test_box_labels_are_stable_distinct_and_keyed_by_the_secret(registry: Registry) -> None:
    one, other = authority_over(registry), authority_over(registry, secret=b"t" * 32)
    label = one.box_label("db-1", "kitchen")
    assert len(label) == 12
    assert label == authority_over(registry).box_label("db-1", "kitchen")
    distinct = {
        label,
        one.box_label("db-1", "counter"),
        one.box_label("db-2", "kitchen"),
        one.box_label("db-1", None),  # the compatible call: one label per database
        one.box_label("db-2", None),
        other.box_label("db-1", "kitchen"),
    }
    assert len(distinct) == 6
    assert one.box_label("db-1", None) == one.box_label("db-1", None)


def test_box_labels_do_not_change_between_versions(registry: Registry) -> None:
    """A label is in every box's hostname and certificate: a new derivation would rename every box. These
    values are HMAC-SHA256 under the secret b"s" * 32 of "native\\0db-1\\0kitchen" and "compatible\\0db-1",
    base32, lower case, 12 characters (README: 'Box labels')."""
    authority = authority_over(registry)
    assert authority.box_label("db-1", "kitchen") == "3rekiso7ikyu"
    assert authority.box_label("db-1", None) == "rt5wcbnueag2"


def test_failed_credentials_are_counted_until_the_limit_refuses(registry: Registry) -> None:
    limited = authority_over(registry, failures_per_ip=1000, failures_per_database=3)
    uuid = new_database(registry)
    for guess in range(3):
        assert refusal(limited, uuid, code=f"guess {guess}", box_id=None) == "unknown_database_or_code"
    with pytest.raises(RateLimited):
        limited.authorize(uuid, CODE, box_id=None, source_ip="127.0.0.1")
    # A right code is not a failure: another database's eligible box is not slowed down.
    fine = new_database(registry)
    for _ in range(4):
        assert refusal(limited, fine) is None


def test_one_wrong_code_sent_again_is_one_failure(registry: Registry) -> None:
    """The newest Odoo boxes send a refused call 6 times in a row, and a shop's boxes share one stale code:
    repeats of one guess count once, so they cannot lock the database out by themselves (limit 3 here)."""
    limited = authority_over(registry, failures_per_ip=1000, failures_per_database=3)
    uuid = new_database(registry)
    for _ in range(3 * 6):
        assert refusal(limited, uuid, code="stale code", box_id=None) == "unknown_database_or_code"
    assert refusal(limited, uuid, box_id=None) is None
    # A second and a third different guess still count: the guesser pays for every new code.
    for guess in ("guess 2", "guess 3"):
        assert refusal(limited, uuid, code=guess, box_id=None) == "unknown_database_or_code"
    with pytest.raises(RateLimited):
        limited.authorize(uuid, CODE, box_id=None, source_ip="127.0.0.1")


def grant_for(authority: Authority, registry: Registry) -> Grant:
    return authority.authorize(new_database(registry), CODE, box_id="box", source_ip="127.0.0.1")


@pytest.mark.parametrize(
    "name", ["*.{label}.{zone}", "192-168-1-25.{label}.{zone}", "PRINTER.{LABEL}.{zone}", "*.{LABEL}.{zone}"]
)
def test_names_inside_the_box_s_subdomain_are_allowed(
    authority: Authority, registry: Registry, name: str
) -> None:
    grant = grant_for(authority, registry)
    requested = name.format(label=grant.box_label, LABEL=grant.box_label.upper(), zone=ZONE)
    # Built as from a CSR's subjectAltName (SubjectNames.from_extension), which keeps the case it was sent in.
    authority.check_requested_names(grant, SubjectNames(dns=(requested,)))


@pytest.mark.parametrize(
    "name",
    [
        "{label}.{zone}",  # the label itself: not under it
        "a.b.{label}.{zone}",  # two levels down: the wildcard would not cover it
        "*.a.{label}.{zone}",  # another wildcard
        "*x.{label}.{zone}",  # a partial wildcard (CA/B Forum forbids them)
        "*.{zone}",
        "x.{other}.{zone}",  # another box's subdomain
        "x{label}.{zone}",  # a suffix match without the dot
        "x.{label}.iot.other.test",
        "192.168.1.25",
    ],
)
def test_names_outside_the_box_s_subdomain_are_refused(
    authority: Authority, registry: Registry, name: str
) -> None:
    grant = grant_for(authority, registry)
    requested = name.format(label=grant.box_label, other=authority.box_label("other", "box"), zone=ZONE)
    names = (  # as from a CSR's subjectAltName: unchecked, in the case it was sent
        SubjectNames.parse(ips=[requested]) if name == "192.168.1.25"  # a label may start with a digit
        else SubjectNames(dns=(f"ok.{grant.box_label}.{ZONE}", requested))
    )
    with pytest.raises(NameNotAllowed) as refused:
        authority.check_requested_names(grant, names)
    assert str(refused.value) == (
        f"names outside this box's subdomain *.{grant.box_label}.{ZONE}: {requested}"
    )


def test_a_refusal_lists_at_most_five_names(authority: Authority, registry: Registry) -> None:
    grant = grant_for(authority, registry)
    outside = [f"n{i}.elsewhere.test" for i in range(7)]
    with pytest.raises(NameNotAllowed) as refused:
        authority.check_requested_names(grant, SubjectNames.parse(dns=outside))
    assert str(refused.value).endswith(": " + ", ".join(outside[:5]))


def test_adding_a_registered_database_again_is_refused_and_keeps_its_code(registry: Registry) -> None:
    uuid = new_database(registry)
    with pytest.raises(Exception, match="already registered"):
        registry.add(uuid, "another code")
    assert refusal(authority_over(registry), uuid) is None
