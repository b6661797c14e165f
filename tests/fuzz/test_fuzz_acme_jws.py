"""The ACME server's JWS layer under fuzzing (issue 24 point 1): flattened JWS documents whose protected
header, payload and signature are drawn by Hypothesis (any JSON, wrong types, non-UTF-8 bytes, deep
nesting, real and forged nonces), POSTed to every signed endpoint of a real ``service run --acme-port``.

Every answer is a 4xx RFC 7807 problem document with a fresh nonce, never a 5xx; afterwards the log holds
no traceback, and no request (none of them is signed by an account) wrote a nonce row. Bounded:
``LANCERT_FUZZ_EXAMPLES`` examples per strategy (default 150).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import josepy as jose
import pytest
from acme_harness import ERROR, AcmeClient, AcmeService, es256_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("LANCERT_FUZZ_EXAMPLES", "150"))
pytestmark = pytest.mark.slow

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeService]:
    running = AcmeService(tmp_path_factory.mktemp("fuzz-acme") / "service").start()
    yield running
    log = running.stop()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def _b64(raw: bytes) -> str:
    return jose.b64encode(raw).decode()


class Target:
    """The signed endpoints, an account's kid to claim, and a tally of what came back."""

    def __init__(self, service: AcmeService) -> None:
        self.client = AcmeClient(service)
        assert self.client.new_account(service.eab(service.database())).status_code == 201
        base = self.client.kid.rsplit("/acct/", 1)[0]
        d = self.client.directory
        self.urls = [d["newAccount"], d["newOrder"], d["revokeCert"], d["keyChange"], self.client.kid,
                     f"{self.client.kid}/orders", f"{base}/order/x", f"{base}/order/x/finalize",
                     f"{base}/authz/x/0", f"{base}/chall/x/²", f"{base}/cert/x"]
        self.statuses: Counter[int] = Counter()

    def send(self, url: str, body: bytes) -> None:
        response = self.client.send("POST", url, content=body,
                                    headers={"Content-Type": "application/jose+json"})
        self.statuses[response.status_code] += 1
        assert 400 <= response.status_code < 500, (url, body[:300], response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/problem+json"), response.text[:300]
        assert response.json()["type"].startswith(ERROR)
        assert response.headers.get("replay-nonce")
        assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def target(service: AcmeService) -> Target:
    return Target(service)


def _settings() -> Any:
    return settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def test_fuzzed_protected_headers_get_a_4xx_problem(target: Target, service: AcmeService) -> None:
    rows = service.used_nonce_rows()
    jwk = es256_key().public_key().to_partial_json()  # a key of no account
    fields = st.fixed_dictionaries({}, optional={
        "alg": st.sampled_from(["ES256", "RS256", "HS256", "none", "", "es256"]) | _json,
        "nonce": st.sampled_from(["real", "AAAA", "!!"]) | _json,
        "url": st.sampled_from(["same", "other"]) | _json,
        "kid": st.sampled_from(["account", "other"]) | _json,
        "jwk": st.sampled_from(["real"]) | _json,
        "crit": _json, "b64": _json,
    })

    @given(header=fields, index=st.integers(0, 10), payload=st.binary(max_size=64) | _json.map(
        lambda v: json.dumps(v).encode()), signature=st.binary(max_size=80))
    @_settings()
    def run(header: dict[str, Any], index: int, payload: bytes, signature: bytes) -> None:
        url = target.urls[index]
        real = {"nonce": target.client.nonce(), "url": url, "kid": target.client.kid, "jwk": jwk}
        named = {"same": url, "other": target.urls[(index + 1) % len(target.urls)],
                 "account": target.client.kid}
        header = {k: real[k] if v == "real" else named.get(v, v) if isinstance(v, str) else v
                  for k, v in header.items()}
        body = {"protected": _b64(json.dumps(header).encode()), "payload": _b64(payload),
                "signature": _b64(signature)}
        target.send(url, json.dumps(body).encode())

    run()
    assert service.used_nonce_rows() == rows, "an unsigned request wrote a nonce row"
    print(f"\nACME JWS header fuzzing: statuses {dict(sorted(target.statuses.items()))}")


def test_fuzzed_raw_bytes_get_a_4xx_problem(target: Target, service: AcmeService) -> None:
    """Any bytes as the protected header or as the whole body: not UTF-8, not JSON, nested 5,000 deep."""
    deep = st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n) | st.integers(1, 10000).map(
        lambda n: b'{"a":' * n)

    @given(raw=st.binary(max_size=200) | deep, whole=st.booleans(), index=st.integers(0, 10))
    @_settings()
    def run(raw: bytes, whole: bool, index: int) -> None:
        body = raw if whole else json.dumps(
            {"protected": _b64(raw), "payload": "", "signature": _b64(b"\0" * 64)}).encode()
        target.send(target.urls[index], body)

    rows = service.used_nonce_rows()
    run()
    assert service.used_nonce_rows() == rows


def test_hand_cases_the_first_fuzzing_round_found(target: Target) -> None:
    """The findings of the outside round, each a 500 with two tracebacks before: alg none, an unknown and
    a non-string alg, a non-string nonce, url and kid, a non-UTF-8 header, deep JSON."""
    client = target.client
    for header in ({"alg": "none"}, {"alg": "XX1"}, {"alg": 5}, {"alg": "ES256", "nonce": 5},
                   {"alg": "ES256", "url": 5}, {"alg": "ES256", "kid": 5, "url": client.kid}):
        target.send(client.kid, json.dumps({"protected": _b64(json.dumps(header).encode()), "payload": "",
                                            "signature": ""}).encode())
    target.send(client.kid, json.dumps({"protected": _b64(b"\xff" * 8), "payload": "", "signature": ""}
                                       ).encode())
    target.send(client.kid, b"[" * 60000)
    target.send(client.kid + "/orders", b'{"protected": ' * 4000)
