"""Every known reader shape of Odoo IoT box code against the compatible endpoint, each with real urllib3
1.26 and 2.x and requests: it installs its certificate when eligible, and every refusal (each eligibility
reason, the rate limit, the certificate still being ordered) ends in a refusal the box shows or logs,
never in an exception (the shapes are in ``field_boxes``, the contract).

Two module parameters combine:

- the service (:data:`SERVICE_VARIANTS`): ``fresh``, as shipped with the internal CA, where every shape
  installs at once; ``slow-issuance``, whose every certificate takes 6 s longer (the test-only entry
  point ``slow_issuer_service.py``), as with an upstream ACME CA: past the 5 s timeout of the requests
  shapes. The first call of each shape must end in a clean refusal, and the same unchanged client called
  again, as a box retries, installs the certificate. Refusals decide before any issuance: as fast there.
- the urllib3 under the shapes: 2.x (this virtualenv's) or 1.26 (installed by ``.ci/run`` into
  ``.venv/urllib3-1.26``; requests runs on it too), the generation most boxes in shops have.

The shapes run in a helper process (``python field_boxes.py``) with that urllib3 first on its path, all of
them at once, one thread a call.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from field_boxes import (
    CRASH,
    NO_RESULT,
    OK,
    REQUEST_EXCEPTION,
    REQUEST_STATUS,
    SHAPES,
    URLLIB3_SHAPES,
    BoxOutcome,
)
from service_testlib import (
    CODE,
    ONE_WINDOW,
    ZONE,
    Registry,
    ServiceProcess,
    seconds_to_window_end,
    write_config,
)

from capabilities import require
from lancert.pki import load_certificates, load_private_key_pem
from lancert.pki.keys import public_key_matches

pytestmark = pytest.mark.slow

FAILURES_PER_DATABASE = 3
REQUESTS_TIMEOUT = 5.0  # seconds: the requests shapes' timeout, the most impatient in the field
SLOW_ISSUANCE = 6.0  # seconds added to every certificate of the slow variant: past that timeout
# Seconds per request: a refusal decides before any issuance, slow or not; one that waited for the slow
# certificate would take the 3.5 s deadline at least.
REFUSAL_WITHIN = 2.0
RETRY_PAUSE = 0.5  # seconds between a box's calls while its certificate is pending
PENDING_FOR_AT_MOST = 40.0  # seconds a box keeps calling before the test calls the delivery lost
NEWEST_REQUESTS = 6  # the newest shape: its request and 5 immediate retries of a failed one
FIELD_BOXES = Path(__file__).parent / "field_boxes.py"
URLLIB3_126 = Path(sys.prefix) / "urllib3-1.26"  # .ci/run: pip install --target .venv/urllib3-1.26


@dataclass(frozen=True)
class ServiceVariant:
    """How to start the service under test: extra ``service run`` arguments, a test-only entry point
    wrapping ``service run`` (None: the CLI itself), and how many seconds slower than the internal CA
    every certificate is (0: not slowed)."""

    args: list[str] = field(default_factory=list)
    entry: Path | None = None
    slow_issuance: float = 0.0
    name: str = ""


SERVICE_VARIANTS: dict[str, Callable[[], ServiceVariant]] = {
    "fresh": lambda: ServiceVariant(),
    "slow-issuance": lambda: ServiceVariant(
        ["--slow-issuance", str(SLOW_ISSUANCE)],
        entry=Path(__file__).parent / "slow_issuer_service.py",
        slow_issuance=SLOW_ISSUANCE,
    ),
}


class BoxRunner:
    """The shapes in a helper process with one urllib3 generation on its path; calls run concurrently."""

    def __init__(self, pythonpath: Path | None) -> None:
        env = dict(os.environ)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        self.process = subprocess.Popen(
            [sys.executable, str(FIELD_BOXES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.versions: dict[str, str] = json.loads(self.process.stdout.readline())
        self._futures: dict[int, Future[BoxOutcome]] = {}
        self._lock = threading.Lock()
        self._tags = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            answer = json.loads(line)
            with self._lock:
                future = self._futures.pop(answer["tag"])
            future.set_result(BoxOutcome(**answer["outcome"]))

    def submit(self, shape: str, server: str, db_uuid: str, code: str | None) -> Future[BoxOutcome]:
        future: Future[BoxOutcome] = Future()
        with self._lock:
            self._tags += 1
            tag = self._tags
            self._futures[tag] = future
            assert self.process.stdin is not None
            self.process.stdin.write(
                json.dumps({"tag": tag, "shape": shape, "server": server, "db_uuid": db_uuid, "code": code})
                + "\n"
            )
            self.process.stdin.flush()
        return future

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module", params=["urllib3-2", "urllib3-1.26"])
def runner(request: pytest.FixtureRequest) -> Iterator[BoxRunner]:
    if request.param == "urllib3-1.26":
        require(URLLIB3_126.is_dir(), f"urllib3 1.26 in {URLLIB3_126} (.ci/run installs it there)")
    boxes = BoxRunner(URLLIB3_126 if request.param == "urllib3-1.26" else None)
    expected = "1.26." if request.param == "urllib3-1.26" else "2."
    assert boxes.versions["urllib3"].startswith(expected), boxes.versions
    yield boxes
    boxes.close()


@pytest.fixture(scope="module", params=sorted(SERVICE_VARIANTS))
def field_variant(request: pytest.FixtureRequest) -> ServiceVariant:
    return replace(SERVICE_VARIANTS[request.param](), name=request.param)


@pytest.fixture(scope="module")
def field_service(
    field_variant: ServiceVariant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A service whose per-database limit trips after 3 wrong guesses (per address: never, here)."""
    name = field_variant.name
    data_dir = tmp_path_factory.mktemp(f"field-{name}")
    config = write_config(
        data_dir.parent / f"field-{name}.toml",
        failures_per_ip=10_000,
        failures_per_database=FAILURES_PER_DATABASE,
        window_seconds=ONE_WINDOW,
    )
    process = ServiceProcess(
        data_dir, ["--config", str(config), "--dns-port", "0", *field_variant.args], entry=field_variant.entry
    ).start()
    yield process
    log = process.stop()
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def field_registry(field_service: ServiceProcess) -> Registry:
    return Registry(field_service.data_dir)


def run_all(
    runner: BoxRunner, service: ServiceProcess, calls: dict[str, tuple[str, str | None]], *, at_once: bool
) -> dict[str, BoxOutcome]:
    """Each shape's one call (``shape: (db_uuid, code)``): all at once (the slow variant's orders then
    run side by side), or one after the other (timed refusals: a wrong code costs a scrypt each, and nine
    at once on a loaded 2-core machine would time the machine, not the service)."""
    if not at_once:
        return {
            shape: runner.submit(shape, service.url, uuid, code).result(timeout=180)
            for shape, (uuid, code) in calls.items()
        }
    futures = {shape: runner.submit(shape, service.url, uuid, code) for shape, (uuid, code) in calls.items()}
    return {shape: future.result(timeout=180) for shape, future in futures.items()}


def no_crash(calls: dict[str, BoxOutcome]) -> None:
    crashed = {shape: outcome.log for shape, outcome in calls.items() if outcome.status == CRASH}
    assert not crashed, crashed


def refusal_of(shape: str, status: int) -> tuple[str, int]:
    """Where each shape ends on a refusal answered with ``status``, and how many requests it made."""
    if shape == "13.0-first":  # reads only ``result``: null, so it installs nothing
        return NO_RESULT, 1
    if shape in URLLIB3_SHAPES:  # shows the status on the box's homepage
        return f"{REQUEST_STATUS} {status}", 1
    return REQUEST_EXCEPTION, NEWEST_REQUESTS if shape == "newest" else 1


def assert_refused(calls: dict[str, BoxOutcome], status: int) -> None:
    no_crash(calls)
    for shape, outcome in calls.items():
        assert (outcome.status, outcome.requests) == refusal_of(shape, status), (shape, outcome)
        assert outcome.private_key_pem is None
        if outcome.status == REQUEST_EXCEPTION:  # requests' raise_for_status names the status
            assert str(status) in outcome.log[-1], (shape, outcome)
        assert outcome.seconds / outcome.requests < REFUSAL_WITHIN, (shape, outcome)


def test_every_shape_installs_its_certificate(
    runner: BoxRunner, field_service: ServiceProcess, field_variant: ServiceVariant, field_registry: Registry
) -> None:
    uuids = {shape: field_registry.add() for shape in SHAPES}
    start = time.monotonic()
    history = {shape: [call] for shape, call in run_all(
        runner, field_service, {shape: (uuid, CODE) for shape, uuid in uuids.items()}, at_once=True
    ).items()}
    give_up = time.monotonic() + PENDING_FOR_AT_MOST
    while time.monotonic() < give_up:
        waiting = {shape: (uuids[shape], CODE) for shape, calls in history.items() if calls[-1].status != OK}
        if not waiting:
            break
        time.sleep(RETRY_PAUSE)
        for shape, call in run_all(runner, field_service, waiting, at_once=True).items():
            history[shape].append(call)
    delivered = time.monotonic() - start
    for shape, calls in history.items():
        assert all(call.status != CRASH for call in calls), (shape, calls)
        outcome = calls[-1]
        assert outcome.status == OK, (shape, calls)
        if shape not in URLLIB3_SHAPES:  # requests with timeout=5: a longer wait is a failed request
            per_request = [call.seconds / call.requests for call in calls]
            assert all(seconds < REQUESTS_TIMEOUT for seconds in per_request), (shape, calls)
        if field_variant.slow_issuance:
            # Slower than 5 s: the first request cannot wait for the certificate. It ends in this shape's
            # refusal ("pending", 429), and a later call of the same client, or the newest shape's own
            # retry, installs it.
            first = calls[0]
            if shape == "newest" and first.status == OK:
                assert first.requests > 1 and "429" in first.log[0], first
            else:
                assert len(calls) > 1 and first.status == refusal_of(shape, 429)[0], (shape, calls)
        else:
            assert len(calls) == 1 and outcome.requests == 1, (shape, calls)
        assert outcome.subject_cn is not None and outcome.x509_pem and outcome.private_key_pem
        label = outcome.subject_cn.split(".")[1]
        assert outcome.subject_cn == f"*.{label}.{ZONE}"
        chain = load_certificates(outcome.x509_pem.encode())
        assert len(chain) == 2  # what nginx serves: leaf then intermediate
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [outcome.subject_cn]
        key = load_private_key_pem(outcome.private_key_pem.encode())
        assert public_key_matches(key, chain[0].public_key())
    if field_variant.slow_issuance:
        assert delivered > REQUESTS_TIMEOUT  # the variant really issues past 5 s


REFUSALS = {
    # case: (registry options (None: no such database), send a wrong code, reason on the wire)
    "wrong code": ((), True, "unknown_database_or_code"),
    "unknown database": (None, False, "unknown_database_or_code"),
    "not production": (("--kind", "staging"), False, "not_production"),
    "subscription closed": (("--subscription", "closed"), False, "subscription_not_in_progress"),
    "no IoT box line": (("--no-iot-line",), False, "no_iot_box_line"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_shape_ends_every_refusal_cleanly(
    runner: BoxRunner, field_service: ServiceProcess, field_registry: Registry, case: str
) -> None:
    options, wrong_code, _reason = REFUSALS[case]

    def database(shape: str) -> str:
        if options is None:
            return f"no-such-database-{shape}-{time.monotonic_ns()}"
        return field_registry.add(*options)

    calls = {shape: (database(shape), "wrong code" if wrong_code else CODE) for shape in SHAPES}
    assert_refused(run_all(runner, field_service, calls, at_once=False), 403)


def _rate_limited_database(field_registry: Registry, service: ServiceProcess) -> str:
    """A database after 3 different wrong codes: the guesser's pattern, which the limit is for."""
    uuid = field_registry.add()
    for guess in range(FAILURES_PER_DATABASE):
        answer = raw(service, uuid, f"guess {guess}")
        assert answer[0] == 403, answer
    assert raw(service, uuid, "one more guess")[0] == 429
    return uuid


def test_every_shape_ends_a_rate_limit_cleanly(
    runner: BoxRunner, field_service: ServiceProcess, field_registry: Registry
) -> None:
    calls = {shape: (_rate_limited_database(field_registry, field_service), CODE) for shape in SHAPES}
    assert_refused(run_all(runner, field_service, calls, at_once=False), 429)  # even the right code waits


def test_retries_of_one_wrong_code_do_not_lock_the_database_out(
    runner: BoxRunner, field_service: ServiceProcess, field_registry: Registry
) -> None:
    """The newest box sends a refused call 6 times, and a shop's boxes share one stale code: 18 requests
    of one wrong guess are one guess, under the limit of 3; the right code then installs."""
    uuid = field_registry.add()
    for _box in range(3):
        outcome = runner.submit("newest", field_service.url, uuid, "stale code").result(timeout=120)
        assert (outcome.status, outcome.requests) == (REQUEST_EXCEPTION, NEWEST_REQUESTS), outcome
        assert "403" in outcome.log[-1]
    installed = runner.submit("newest", field_service.url, uuid, CODE).result(timeout=120)
    assert installed.status in {OK, REQUEST_EXCEPTION}, installed
    if installed.status == REQUEST_EXCEPTION:  # slow issuance: still pending after its retries
        assert "429" in installed.log[-1] and "403" not in " ".join(installed.log), installed


def test_the_newest_shape_without_an_enterprise_code_is_refused_cleanly(
    runner: BoxRunner, field_service: ServiceProcess
) -> None:
    """The newest box sends its setting as it is: ``null`` when none was entered."""
    outcome = runner.submit("newest", field_service.url, "no-such-db-null-code", None).result(timeout=120)
    assert (outcome.status, outcome.requests) == (REQUEST_EXCEPTION, NEWEST_REQUESTS), outcome
    assert "403" in outcome.log[-1]


def raw(service: ServiceProcess, uuid: str, code: str, **envelope: Any) -> tuple[int, dict[str, Any], str]:
    reply = requests.post(
        service.url + "/odoo-enterprise/iot/x509",
        json={**envelope, "params": {"db_uuid": uuid, "enterprise_code": code}},
        timeout=30,
    )
    return reply.status_code, reply.json(), reply.headers.get("Retry-After", "")


def test_a_refusal_on_the_wire(field_service: ServiceProcess, field_registry: Registry) -> None:
    """The one refusal form, as the README shows it: the native API's status and error object, with
    ``"result": null`` beside it for the first 13.0 boxes, and the JSON-RPC id echoed."""
    assert raw(field_service, "no-such-db-raw", "wrong", jsonrpc="2.0", id=7) == (
        403,
        {
            "jsonrpc": "2.0",
            "id": 7,
            "result": None,
            "error": {
                "code": "not_eligible",
                "message": "unknown database or wrong enterprise code",
                "reason": "unknown_database_or_code",
            },
        },
        "",
    )
    for case, (options, _wrong, reason) in REFUSALS.items():
        if options:
            status, body, _ = raw(field_service, field_registry.add(*options), CODE)
            assert (status, body["result"], body["error"]["reason"]) == (403, None, reason), case
    limited = _rate_limited_database(field_registry, field_service)
    status, body, retry_after = raw(field_service, limited, CODE)
    assert (status, body["result"], body["error"]["code"]) == (429, None, "rate_limited")
    assert abs(int(retry_after) - seconds_to_window_end()) <= 3  # when the window ends
    assert body["error"]["retry_after"] == int(retry_after)


def test_a_malformed_call_also_carries_a_null_result(field_service: ServiceProcess) -> None:
    reply = requests.post(field_service.url + "/odoo-enterprise/iot/x509", json={"jsonrpc": "2.0"}, timeout=9)
    assert reply.status_code == 400
    assert reply.json()["result"] is None and reply.json()["error"]["code"] == "invalid_request"


def test_openapi_describes_the_compatible_refusals(field_service: ServiceProcess) -> None:
    schema = requests.get(field_service.url + "/openapi.json", timeout=30).json()
    responses = schema["paths"]["/odoo-enterprise/iot/x509"]["post"]["responses"]
    for status in ("403", "429"):
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/CompatibleRefusal"
        }
    refusal = schema["components"]["schemas"]["CompatibleRefusal"]["properties"]
    assert refusal["result"]["type"] == "null" and "error" in refusal


class _Counting(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the status the test set, and counts the requests that arrived."""

    status = 429
    seen = 0

    def do_POST(self) -> None:
        type(self).seen += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"jsonrpc": "2.0", "id": None, "result": None,
                           "error": {"code": "rate_limited", "message": "wait", "retry_after": 1}}).encode()
        self.send_response(type(self).status)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("status", [403, 429, 503])
def test_urllib3_never_resends_a_refused_post_and_only_the_newest_shape_retries(
    runner: BoxRunner, status: int
) -> None:
    """Retry(4) and urllib3's default retries re-send on a status only for idempotent methods (429 and 503
    with Retry-After included), never a POST: each urllib3 shape sends one request per refusal, the newest
    shape six (its own retries). Counted on the server side, with the urllib3 the runner has."""
    _Counting.status = status
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for shape in SHAPES:
            before = _Counting.seen
            outcome = runner.submit(shape, url, "db", "code").result(timeout=60)
            assert outcome.status != CRASH, (shape, outcome)
            expected = NEWEST_REQUESTS if shape == "newest" else 1
            assert (_Counting.seen - before, outcome.requests) == (expected, expected), (shape, outcome)
    finally:
        server.shutdown()
        server.server_close()
