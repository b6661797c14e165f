"""The first requests a just-started ACME port gets, several at once, each get the answer RFC 8555 and
the port's guards give at any other time: the directory, a nonce, a 404 problem, and the 413 problem
for a body over 64 KiB (issue 21: however the service arranges its start, these are there from its
ready line on)."""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from acme_harness import ACME_HOST, ERROR, AcmeService

pytestmark = pytest.mark.slow  # starts a service process


def test_every_kind_of_first_request_at_once_gets_its_answer(tmp_path: Path) -> None:
    service = AcmeService(tmp_path / "service").start()
    try:
        tls = ssl.create_default_context(cafile=str(service.root_pem))
        origin = f"https://{ACME_HOST}:{service.port}"

        def ask(method: str, path: str, body: bytes | None = None) -> httpx.Response:
            with httpx.Client(verify=tls, timeout=30, trust_env=False) as client:
                return client.request(
                    method, f"https://127.0.0.1:{service.port}{path}", content=body,
                    headers={"Host": f"{ACME_HOST}:{service.port}", "Content-Type": "application/jose+json"},
                    extensions={"sni_hostname": ACME_HOST})

        asks = [("POST", "/acme/new-account", b"x" * (64 * 1024 + 1)), ("GET", "/acme/directory", None),
                ("HEAD", "/acme/new-nonce", None), ("GET", "/acme/no-such-resource", None)] * 3
        with ThreadPoolExecutor(len(asks)) as pool:
            answers = list(pool.map(lambda a: ask(*a), asks))
        for (method, path, _), answer in zip(asks, answers, strict=True):
            if path == "/acme/new-account":
                assert answer.status_code == 413, answer.text
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.json()["type"] == ERROR + "malformed"
            elif path == "/acme/directory":
                assert answer.status_code == 200, answer.text
                assert answer.json()["newAccount"] == f"{origin}/acme/new-account"
                assert answer.headers.get("replay-nonce")
            elif method == "HEAD":
                assert answer.status_code == 200 and answer.headers.get("replay-nonce")
                assert answer.headers["cache-control"] == "no-store"
            else:
                assert answer.status_code == 404
                assert answer.json()["type"] == ERROR + "malformed"
                assert answer.headers.get("replay-nonce")
    finally:
        log = service.stop()
    assert "Traceback" not in log, log
