"""Low-severity findings of the fuzzing run at the service (issue 9, point 5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from service_testlib import CODE, Registry, ServiceProcess, make_csr

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_405_names_the_allowed_methods(service: ServiceProcess) -> None:
    with service.client() as client:
        answer = client.get("/api/v1/certificates")
        assert answer.status_code == 405
        assert answer.headers["allow"] == "POST"
        assert answer.json()["error"]["code"] == "method_not_allowed"
        assert client.delete("/healthz").headers["allow"] == "GET"


def test_no_redirect_built_from_the_host_header(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=30, follow_redirects=False) as client:
        answer = client.post("/api/v1/certificates/", json={}, headers={"Host": "evil.example"})
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert "evil.example" not in answer.text


@pytest.mark.parametrize("request_id", [False, True, 0, 1, "1", "abc", None, 7.5])
def test_the_compatible_call_echoes_a_valid_id_exactly_and_refuses_a_boolean(
    service: ServiceProcess, registry: Registry, request_id: object
) -> None:
    with service.client() as client:
        answer = client.post("/odoo-enterprise/iot/x509", json={
            "jsonrpc": "2.0", "id": request_id, "params": {"db_uuid": "unknown-db", "enterprise_code": "x"}})
    if isinstance(request_id, bool):  # JSON-RPC 2.0: an id is a string, a number or null
        assert answer.status_code == 400 and answer.json()["error"]["field"] == "id"
        return
    assert answer.status_code == 403  # a refusal, its id echoed all the same
    echoed = answer.json()["id"]
    assert echoed == request_id and type(echoed) is type(request_id)


@pytest.mark.parametrize("suffix", ["\x00", "\x00\x00", "\n", "\x1b", "\x7f"])
def test_an_enterprise_code_with_control_characters_is_refused(
    service: ServiceProcess, registry: Registry, suffix: str
) -> None:
    uuid = registry.add()
    with service.client() as client:
        native = client.post("/api/v1/certificates", json={
            "db_uuid": uuid, "enterprise_code": CODE + suffix, "box_id": "box-ctl", "csr": make_csr()})
        compatible = client.post("/odoo-enterprise/iot/x509", json={
            "params": {"db_uuid": uuid, "enterprise_code": CODE + suffix}})
    for answer in (native, compatible):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["field"] == "params.enterprise_code" if answer is compatible else (
            answer.json()["error"]["field"] == "enterprise_code")


@pytest.mark.parametrize("digest", ["sha1", "md5"])
def test_a_csr_signed_with_a_weak_hash_is_named_so(
    service: ServiceProcess, registry: Registry, digest: str, tmp_path: Path
) -> None:
    # cryptography refuses to sign with these, so the CSR comes from openssl as an old box would make it.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pem = subprocess.run(["openssl", "req", "-new", f"-{digest}", "-key", str(key_file), "-subj", "/CN=weak"],
                         check=True, capture_output=True, text=True).stdout
    with service.client() as client:
        answer = client.post("/api/v1/certificates", json={
            "db_uuid": registry.add(), "enterprise_code": CODE, "box_id": "box-weak", "csr": pem})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_csr"
    assert error["message"] == (f"CSR is signed with a weak hash ({digest.upper()}); sign it with SHA-256 "
                                "or stronger")
