"""The eligibility registry in-process, over a real SQLite file: hashing, limits, add/set/list.

The command line over it (``lancert service db ...``) is in test_service_registry.py.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterator

import pytest

import lancert.service.registry as registry_module
from lancert.errors import UsageError
from lancert.service.database import Database
from lancert.service.registry import (
    DatabaseKind,
    Registry,
    RegistryError,
    SubscriptionStatus,
    hash_code,
    verify_code,
)


@pytest.fixture(autouse=True)
def cheap_scrypt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows stored with scrypt N=2^10 instead of 2^14 (each hash carries its parameters, so verifying
    follows them): these tests add dozens of rows, and the mutation run repeats them per mutant. Tests of
    the hashing itself (marked ``real_scrypt``) keep the real function."""
    if request.node.get_closest_marker("real_scrypt") is None:
        cheap = functools.partial(registry_module.hash_code, n=2**10)
        monkeypatch.setattr(registry_module, "hash_code", cheap)


_counter = itertools.count()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'service.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def registry(database: Database) -> Registry:
    """A new Registry per test (cheap): every test then runs its constructor, which is what lets mutation
    testing attribute the constructor to each test."""
    return Registry(database)


def new_uuid() -> str:
    return f"registry-db-{next(_counter)}"


def fields(record: object) -> tuple[object, ...]:
    """A record without its timestamps: the row written carries an aware UTC time, the same row read back
    from SQLite a naive one (noted in docs/mutation.md; not part of this contract)."""
    return (record.uuid, record.kind, record.subscription, record.iot_box_line)  # type: ignore[attr-defined]


@pytest.mark.real_scrypt
def test_a_code_hash_is_scrypt_with_its_parameters_and_a_16_byte_salt() -> None:
    stored = hash_code("M-12345-XYZ")
    algo, n, r, p, salt, digest = stored.split("$")
    assert (algo, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16
    expected = hashlib.scrypt(b"M-12345-XYZ", salt=bytes.fromhex(salt), n=16384, r=8, p=1, maxmem=2**25)
    assert digest == expected.hex()
    assert hash_code("M-12345-XYZ") != stored  # a new salt each time


@pytest.mark.real_scrypt
def test_the_cost_can_be_raised_past_openssl_s_default_memory_limit() -> None:
    # N=2^15, r=8 needs 32 MiB, OpenSSL's default scrypt limit: the limit is sized from the parameters.
    stored = hash_code("M-1", n=2**15)
    assert stored.split("$")[1] == "32768" and verify_code("M-1", stored)


@pytest.mark.real_scrypt
def test_verify_accepts_the_code_only() -> None:
    # Parameters other than the defaults: verifying must use those stored with the hash (they can be
    # raised later without invalidating rows).
    stored = hash_code("M-12345-XYZ", n=2**11, r=4, p=2)
    assert stored.split("$")[1:4] == ["2048", "4", "2"]
    assert verify_code("M-12345-XYZ", stored) is True
    assert verify_code("M-12345-XYZ ", stored) is False
    assert verify_code("m-12345-xyz", stored) is False
    assert verify_code("", stored) is False


@pytest.mark.real_scrypt
@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt$1024$8$1$00",  # a field missing
        "bcrypt$1024$8$1$00$00",  # another algorithm, even with a matching digest
        "scrypt$x$8$1$00$00",
        "scrypt$1024$8$1$zz$00",
        "scrypt$1024$8$1$00$zz",
    ],
)
def test_verify_refuses_a_malformed_or_foreign_hash(stored: str) -> None:
    assert verify_code("code", stored) is False


def test_verify_refuses_another_algorithm_with_a_matching_digest() -> None:
    scrypt = hash_code("code", n=2**10)
    assert verify_code("code", "bcrypt" + scrypt.removeprefix("scrypt")) is False


def test_add_then_authenticate_and_list(registry: Registry) -> None:
    uuid = new_uuid()
    added = registry.add(f"  {uuid} ", "M-1", kind=DatabaseKind.STAGING,
                         subscription=SubscriptionStatus.PAUSED, iot_box_line=False)
    assert (added.uuid, added.kind, added.subscription, added.iot_box_line) == (
        uuid, DatabaseKind.STAGING, SubscriptionStatus.PAUSED, False
    )
    assert fields(registry.authenticate(uuid, "M-1")) == fields(added)
    assert registry.authenticate(uuid, "M-2") is None
    assert registry.authenticate("unknown-" + uuid, "M-1") is None
    listed = {record.uuid: record for record in registry.list()}
    assert fields(listed[uuid]) == fields(added)
    assert added.as_json() == {
        "uuid": uuid, "kind": "staging", "subscription": "paused", "iot_box_line": False,
        "created_at": added.created_at.isoformat(), "updated_at": added.updated_at.isoformat(),
    }


def test_the_defaults_are_an_eligible_database(registry: Registry) -> None:
    added = registry.add(new_uuid(), "M-1")
    assert (added.kind, added.subscription, added.iot_box_line) == (
        DatabaseKind.PRODUCTION, SubscriptionStatus.IN_PROGRESS, True
    )


def test_list_is_ordered_by_uuid(registry: Registry) -> None:
    for uuid in ("list-zz", "list-aa", "list-mm"):  # inserted out of order
        registry.add(uuid, "M-1")
    uuids = [record.uuid for record in registry.list()]
    assert uuids == sorted(uuids)
    assert [u for u in uuids if u.startswith("list-")] == ["list-aa", "list-mm", "list-zz"]


def test_adding_twice_is_refused_and_names_the_fix(registry: Registry) -> None:
    uuid = new_uuid()
    registry.add(uuid, "M-1")
    with pytest.raises(RegistryError) as refused:
        registry.add(uuid, "M-2")
    assert str(refused.value) == f"database {uuid} is already registered; use 'lancert service db set'"
    assert registry.authenticate(uuid, "M-1") is not None


def test_set_on_an_unknown_database_is_refused_and_names_the_fix(registry: Registry) -> None:
    with pytest.raises(RegistryError) as refused:
        registry.set("never-added", iot_box_line=True)
    assert str(refused.value) == "database never-added is not registered; use 'lancert service db add'"


def test_set_changes_only_what_is_given(registry: Registry) -> None:
    uuid = new_uuid()
    registry.add(uuid, "M-1", iot_box_line=False)
    changed = registry.set(uuid, iot_box_line=True)
    assert (changed.kind, changed.subscription, changed.iot_box_line) == (
        DatabaseKind.PRODUCTION, SubscriptionStatus.IN_PROGRESS, True
    )
    changed = registry.set(uuid, kind=DatabaseKind.DUPLICATE)
    assert (changed.kind, changed.iot_box_line) == (DatabaseKind.DUPLICATE, True)
    changed = registry.set(uuid, subscription=SubscriptionStatus.CLOSED)
    assert (changed.kind, changed.subscription) == (DatabaseKind.DUPLICATE, SubscriptionStatus.CLOSED)
    assert fields(registry.authenticate(uuid, "M-1")) == fields(changed)


def test_a_new_code_replaces_the_old_one_even_once_verified(registry: Registry) -> None:
    uuid = new_uuid()
    registry.add(uuid, "old code")
    assert registry.authenticate(uuid, "old code") is not None  # now in the verified cache
    registry.set(uuid, code="new code")
    assert registry.authenticate(uuid, "old code") is None
    assert registry.authenticate(uuid, "new code") is not None


def test_a_box_asking_again_costs_no_scrypt(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    import lancert.service.registry as registry_module

    uuid = new_uuid()
    registry.add(uuid, "M-1")
    checks: list[str] = []
    real = registry_module.verify_code

    def counting(code: str, stored: str) -> bool:
        checks.append(code)
        return real(code, stored)

    monkeypatch.setattr(registry_module, "verify_code", counting)
    for _ in range(3):
        assert registry.authenticate(uuid, "M-1") is not None
    assert checks == ["M-1"]  # the first success only
    for _ in range(2):
        assert registry.authenticate(uuid, "wrong") is None
    assert checks == ["M-1", "wrong", "wrong"]  # a wrong code always pays the full price


def test_the_verified_cache_holds_successes_only_and_stays_bounded(registry: Registry) -> None:
    small = Registry(registry.database)
    small.VERIFIED_CACHE_SIZE = 2  # type: ignore[misc]
    uuids = [new_uuid() for _ in range(3)]
    for uuid in uuids:
        small.add(uuid, "M-1")
    assert small.authenticate(uuids[0], "wrong") is None
    assert len(small._verified) == 0
    for uuid in uuids:
        assert small.authenticate(uuid, "M-1") is not None
    assert [key[0] for key in small._verified] == uuids[1:]  # the oldest success left first
    # A cached success does not make another code right.
    assert small.authenticate(uuids[2], "M-2") is None


@pytest.mark.parametrize(
    ("uuid", "code", "message"),
    [
        ("", "code", "--uuid must be 1 to 128 printable ASCII characters without spaces"),
        ("   ", "code", "--uuid must be 1 to 128 printable ASCII characters without spaces"),
        ("u" * 129, "code", "--uuid must be 1 to 128 printable ASCII characters without spaces"),
        ("a\nb", "code", "--uuid must be 1 to 128 printable ASCII characters without spaces"),
        ("ok-uuid", "", "--code must be 1 to 256 characters"),
        ("ok-uuid", "c" * 257, "--code must be 1 to 256 characters"),
    ],
)
def test_uuid_and_code_limits(registry: Registry, uuid: str, code: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        registry.add(uuid, code)
    assert str(refused.value) == message


def test_the_longest_uuid_and_code_are_accepted(registry: Registry) -> None:
    uuid = "u" * 127 + str(next(_counter) % 10)
    registry.add(uuid, "c" * 256)
    assert registry.authenticate(uuid, "c" * 256) is not None
    with pytest.raises(UsageError, match="--code must be 1 to 256 characters"):
        registry.set(uuid, code="c" * 257)
