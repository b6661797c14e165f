"""Every generation of field IoT box against the compatible endpoint: its success and every refusal end in
its own documented outcome, never in a crash (the clients are in ``field_boxes``, the contract).

The service fixture is parametrized by variant (:data:`SERVICE_VARIANTS`), one service per variant for the
module, so the same tests run against:

- ``fresh``: the service as shipped, internal CA: every generation installs its certificate at once;
- ``slow-issuance``: the same service whose every certificate takes 6 s longer (the test-only entry point
  ``slow_issuer_service.py``), as with an upstream ACME CA: past the middle generation's 5 s timeout.
  The first call of each generation must end in that generation's refusal ("pending": a falsy ``result``
  for the oldest, ``result.error`` for the others) in under 5 s, and the same unchanged client called
  again, as a box retries, installs the certificate. Refusals decide before any issuance: they must be
  as fast there as on a fresh service.

A factory may ask for other fixtures (``request.getfixturevalue``, e.g. a Pebble) and returns how to start
its service.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import requests
import urllib3
from cryptography import x509
from field_boxes import GENERATIONS, NO_RESULT, OK, REQUEST_EXCEPTION, BoxOutcome
from service_testlib import CODE, ZONE, Registry, ServiceProcess, write_config

from lancert.pki import load_certificates, load_private_key_pem
from lancert.pki.keys import public_key_matches

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

FAILURES_PER_DATABASE = 3
MIDDLE_TIMEOUT = 5.0  # seconds: the middle generation's requests timeout, the most impatient in the field
SLOW_ISSUANCE = 6.0  # seconds added to every certificate of the slow variant: past that timeout
REFUSAL_WITHIN = 2.0  # seconds per request: a refusal decides before any issuance, slow or not
RETRY_PAUSE = 0.5  # seconds between a box's calls while its certificate is pending
PENDING_FOR_AT_MOST = 30.0  # seconds a box keeps calling before the test calls the delivery lost


@dataclass(frozen=True)
class ServiceVariant:
    """How to start the service under test: extra ``service run`` arguments, the full environment (None:
    this process's), a test-only entry point wrapping ``service run`` (None: the CLI itself), and how many
    seconds slower than the internal CA every certificate is (0: not slowed)."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    entry: Path | None = None
    slow_issuance: float = 0.0
    name: str = ""


SERVICE_VARIANTS: dict[str, Callable[[pytest.FixtureRequest], ServiceVariant]] = {
    "fresh": lambda _request: ServiceVariant(),
    "slow-issuance": lambda _request: ServiceVariant(
        ["--slow-issuance", str(SLOW_ISSUANCE)],
        entry=Path(__file__).parent / "slow_issuer_service.py",
        slow_issuance=SLOW_ISSUANCE,
    ),
}


@pytest.fixture(scope="module", params=sorted(SERVICE_VARIANTS))
def field_variant(request: pytest.FixtureRequest) -> ServiceVariant:
    return replace(SERVICE_VARIANTS[request.param](request), name=request.param)


@pytest.fixture(scope="module")
def field_service(
    field_variant: ServiceVariant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A service whose per-database limit trips after 3 wrong codes (per address: never, here)."""
    name = field_variant.name
    data_dir = tmp_path_factory.mktemp(f"field-{name}")
    config = write_config(
        data_dir.parent / f"field-{name}.toml",
        failures_per_ip=10_000,
        failures_per_database=FAILURES_PER_DATABASE,
        window_seconds=600,
    )
    process = ServiceProcess(
        data_dir,
        ["--config", str(config), "--dns-port", "0", *field_variant.args],
        env=field_variant.env,
        entry=field_variant.entry,
    ).start()
    yield process
    log = process.stop()
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def field_registry(field_service: ServiceProcess) -> Registry:
    return Registry(field_service.data_dir)


def timed(
    generation: str, service: ServiceProcess, uuid: str, code: str | None, **options: bool
) -> tuple[BoxOutcome, float]:
    """One run of a generation's client logic, and the seconds it took."""
    start = time.monotonic()
    outcome = GENERATIONS[generation](service.url, uuid, code, **options)
    return outcome, time.monotonic() - start


def refused_fast(outcome: BoxOutcome, elapsed: float) -> None:
    assert elapsed / outcome.requests < REFUSAL_WITHIN, (elapsed, outcome)


def until_installed(generation: str, service: ServiceProcess, uuid: str) -> list[tuple[BoxOutcome, float]]:
    """The unchanged client called again and again, as a box retries, until it gets anything but its
    refusal (or the test gives up): every call and its duration."""
    calls = [timed(generation, service, uuid, CODE)]
    give_up = time.monotonic() + PENDING_FOR_AT_MOST
    while calls[-1][0].status == NO_RESULT and time.monotonic() < give_up:
        time.sleep(RETRY_PAUSE)
        calls.append(timed(generation, service, uuid, CODE))
    return calls


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_each_generation_installs_its_certificate(
    field_service: ServiceProcess, field_variant: ServiceVariant, field_registry: Registry, generation: str
) -> None:
    uuid = field_registry.add()
    start = time.monotonic()
    calls = until_installed(generation, field_service, uuid)
    delivered = time.monotonic() - start
    outcome = calls[-1][0]
    assert outcome.status == OK, calls
    # One request per call (the newest would retry a timed-out one). The middle generation's timeout
    # would end it in REQUEST_EXCEPTION; the newest sends what the middle one sends, so the service
    # cannot give it longer: both are answered within 5 s. The oldest has no timeout of its own.
    assert all(call.requests == 1 for call, _ in calls), calls
    if generation != "oldest":
        assert all(elapsed < MIDDLE_TIMEOUT for _, elapsed in calls), calls
    if field_variant.slow_issuance:
        # Slower than 5 s: the first call cannot wait for the certificate. It ends in this generation's
        # refusal ("pending"), which the newer two log; a later call of the same client installs it.
        assert delivered > MIDDLE_TIMEOUT, calls  # the variant really issues past 5 s
        first = calls[0][0]
        assert first.status == NO_RESULT and first.private_key_pem is None, calls
        if generation != "oldest":
            assert "ask again" in first.log[-1], first
        assert all(call.status == NO_RESULT for call, _ in calls[:-1]), calls
    else:
        assert len(calls) == 1, calls
    assert outcome.subject_cn is not None and outcome.x509_pem and outcome.private_key_pem
    label = outcome.subject_cn.split(".")[1]
    assert outcome.subject_cn == f"*.{label}.{ZONE}"
    chain = load_certificates(outcome.x509_pem.encode())
    assert len(chain) == 2  # what nginx serves: leaf then intermediate
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [outcome.subject_cn]
    assert public_key_matches(load_private_key_pem(outcome.private_key_pem.encode()), chain[0].public_key())


REFUSALS = {
    # case: (registry options, use a wrong code, the service's message the newer boxes log)
    "wrong code": ((), True, "unknown database or wrong enterprise code"),
    "unknown database": (None, False, "unknown database or wrong enterprise code"),
    "not production": (("--kind", "staging"), False, "the database is not a production database"),
    "no subscription": (("--subscription", "closed"), False, "the subscription is not in progress"),
    "no IoT box line": (("--no-iot-line",), False, "the subscription has no IoT box line"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_each_generation_ends_each_refusal_in_no_result(
    field_service: ServiceProcess, field_registry: Registry, generation: str, case: str
) -> None:
    options, wrong_code, message = REFUSALS[case]
    uuid = "no-such-database-" + generation if options is None else field_registry.add(*options)
    outcome, elapsed = timed(generation, field_service, uuid, "wrong code" if wrong_code else CODE)
    assert outcome.status == NO_RESULT, outcome
    refused_fast(outcome, elapsed)
    assert outcome.requests == 1  # a refusal is an answer: the newest box does not retry it
    assert outcome.private_key_pem is None
    if generation != "oldest":  # the oldest only knows "no result"; the newer ones log the reason
        assert message in outcome.log[-1]


def _rate_limited_database(field_registry: Registry, service: ServiceProcess) -> str:
    uuid = field_registry.add()
    for _ in range(FAILURES_PER_DATABASE):
        assert GENERATIONS["middle"](service.url, uuid, "a guess").status == NO_RESULT
    return uuid


EXPECTED_WHEN_RATE_LIMITED = {
    # generation: (status, requests made); the newest retries a failed request 5 times, then gives up
    "oldest": ("ERR_IOT_HTTPS_LOAD_REQUEST_STATUS 429", 1),
    "middle": (REQUEST_EXCEPTION, 1),
    "newest": (REQUEST_EXCEPTION, 6),
}


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_each_generation_ends_a_rate_limit_in_its_status_outcome(
    field_service: ServiceProcess, field_registry: Registry, generation: str
) -> None:
    uuid = _rate_limited_database(field_registry, field_service)
    outcome, elapsed = timed(generation, field_service, uuid, CODE)  # even the right code waits
    assert (outcome.status, outcome.requests) == EXPECTED_WHEN_RATE_LIMITED[generation], outcome
    refused_fast(outcome, elapsed)
    if generation != "oldest":
        assert "429" in outcome.log[-1]


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_a_rate_limit_body_alone_ends_in_the_refusal_of_each_generation(
    field_service: ServiceProcess, field_registry: Registry, generation: str
) -> None:
    """A box that skipped the status check would still end in its refusal, not in a crash."""
    uuid = _rate_limited_database(field_registry, field_service)
    outcome, elapsed = timed(generation, field_service, uuid, CODE, checks_status=False)
    assert (outcome.status, outcome.requests) == (NO_RESULT, 1), outcome
    refused_fast(outcome, elapsed)


def test_newest_box_without_an_enterprise_code_is_refused_not_retried(field_service: ServiceProcess) -> None:
    """The newest box sends its setting as it is: ``null`` when none was entered."""
    outcome, elapsed = timed("newest", field_service, "no-such-database-null-code", None)
    assert (outcome.status, outcome.requests) == (NO_RESULT, 1), outcome
    refused_fast(outcome, elapsed)
    assert "unknown database or wrong enterprise code" in outcome.log[-1]


def _raw(service: ServiceProcess, generation: str, uuid: str) -> tuple[int, dict[str, object]]:
    """Status and body, without the JSON-RPC ``id`` (its echo is another contract)."""
    body = {"params": {"db_uuid": uuid, "enterprise_code": "wrong"}}
    if generation == "oldest":
        response = urllib3.PoolManager().request(
            "POST",
            service.url + "/odoo-enterprise/iot/x509",
            body=json.dumps(body).encode(),
            headers={"Content-type": "application/json", "Accept": "text/plain"},
        )
        status, answer = response.status, json.loads(response.data)
    else:
        reply = requests.post(service.url + "/odoo-enterprise/iot/x509", json=body, timeout=30)
        status, answer = reply.status_code, reply.json()
    answer.pop("id", None)
    return status, answer


def test_oldest_generation_gets_a_null_result_and_the_others_result_error(
    field_service: ServiceProcess,
) -> None:
    """The two refusal forms on the wire, as the README shows them."""
    assert _raw(field_service, "oldest", "no-such-db-raw") == (200, {"jsonrpc": "2.0", "result": None})
    assert _raw(field_service, "middle", "no-such-db-raw") == (
        200,
        {
            "jsonrpc": "2.0",
            "result": {
                "error": "unknown database or wrong enterprise code",
                "reason": "unknown_database_or_code",
            },
        },
    )


def test_the_oldest_generation_is_told_by_its_user_agent_or_its_accept_header(
    field_service: ServiceProcess,
) -> None:
    url = field_service.url + "/odoo-enterprise/iot/x509"
    body = {"params": {"db_uuid": "no-such-db-headers", "enterprise_code": ""}}
    by_agent = requests.post(url, json=body, headers={"User-Agent": "python-urllib3/1.24.1"}, timeout=30)
    by_accept = requests.post(url, json=body, headers={"Accept": "text/plain"}, timeout=30)
    curl_like = requests.post(
        url, json=body, headers={"User-Agent": "curl/8.5.0", "Accept": "*/*"}, timeout=30
    )
    assert by_agent.json()["result"] is None
    assert by_accept.json()["result"] is None
    assert curl_like.json()["result"]["reason"] == "unknown_database_or_code"


def test_openapi_describes_the_compatible_refusals(field_service: ServiceProcess) -> None:
    """Schema-driven clients and fuzzers read the rate limit's body as the same JSON-RPC answer."""
    schema = requests.get(field_service.url + "/openapi.json", timeout=30).json()
    responses = schema["paths"]["/odoo-enterprise/iot/x509"]["post"]["responses"]
    assert responses["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompatibleResponse"
    }
    result = schema["components"]["schemas"]["CompatibleResponse"]["properties"]["result"]
    assert {"type": "null"} in result["anyOf"]
