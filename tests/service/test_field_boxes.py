"""Every generation of field IoT box against the compatible endpoint: its success and every refusal end in
its own documented outcome, never in a crash (the clients are in ``field_boxes``, the contract).

The service fixture is parametrized by variant, so the same tests run against every service a variant
starts. Today: a fresh one. A variant whose issuance is slowed past 5 s (an upstream ACME CA) is one more
entry in :data:`SERVICE_VARIANTS`: its factory may ask for other fixtures (``request.getfixturevalue``,
e.g. a Pebble) and returns the extra ``service run`` arguments; the middle generation's 5 s timeout then
makes these same tests fail unless the service answers it in time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
import urllib3
from cryptography import x509
from field_boxes import GENERATIONS, NO_RESULT, OK, REQUEST_EXCEPTION, newest_box
from service_testlib import CODE, ZONE, Registry, ServiceProcess, write_config

from lancert.pki import load_certificates, load_private_key_pem
from lancert.pki.keys import public_key_matches

FAILURES_PER_DATABASE = 3


@dataclass(frozen=True)
class ServiceVariant:
    """How to start the service under test: extra ``service run`` arguments and the full environment
    (None: this process's)."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None


SERVICE_VARIANTS: dict[str, Callable[[pytest.FixtureRequest], ServiceVariant]] = {
    "fresh": lambda _request: ServiceVariant(),
}


@pytest.fixture(scope="module", params=sorted(SERVICE_VARIANTS))
def field_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A service whose per-database limit trips after 3 wrong codes (per address: never, here)."""
    variant = SERVICE_VARIANTS[request.param](request)
    data_dir = tmp_path_factory.mktemp(f"field-{request.param}")
    config = write_config(
        data_dir.parent / f"field-{request.param}.toml",
        failures_per_ip=10_000,
        failures_per_database=FAILURES_PER_DATABASE,
        window_seconds=600,
    )
    process = ServiceProcess(
        data_dir, ["--config", str(config), "--dns-port", "0", *variant.args], env=variant.env
    ).start()
    yield process
    log = process.stop()
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def field_registry(field_service: ServiceProcess) -> Registry:
    return Registry(field_service.data_dir)


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_each_generation_installs_its_certificate(
    field_service: ServiceProcess, field_registry: Registry, generation: str
) -> None:
    outcome = GENERATIONS[generation](field_service.url, field_registry.add(), CODE)
    assert outcome.status == OK, outcome
    assert outcome.requests == 1
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
    outcome = GENERATIONS[generation](field_service.url, uuid, "wrong code" if wrong_code else CODE)
    assert outcome.status == NO_RESULT, outcome
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
    outcome = GENERATIONS[generation](field_service.url, uuid, CODE)  # even the right code waits
    assert (outcome.status, outcome.requests) == EXPECTED_WHEN_RATE_LIMITED[generation], outcome
    if generation != "oldest":
        assert "429" in outcome.log[-1]


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
def test_a_rate_limit_body_alone_ends_in_the_refusal_of_each_generation(
    field_service: ServiceProcess, field_registry: Registry, generation: str
) -> None:
    """A box that skipped the status check would still end in its refusal, not in a crash."""
    uuid = _rate_limited_database(field_registry, field_service)
    outcome = GENERATIONS[generation](field_service.url, uuid, CODE, checks_status=False)
    assert (outcome.status, outcome.requests) == (NO_RESULT, 1), outcome


def test_newest_box_without_an_enterprise_code_is_refused_not_retried(field_service: ServiceProcess) -> None:
    """The newest box sends its setting as it is: ``null`` when none was entered."""
    outcome = newest_box(field_service.url, "no-such-database-null-code", None)
    assert (outcome.status, outcome.requests) == (NO_RESULT, 1), outcome
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
