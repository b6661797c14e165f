"""Hostile input: size limit, malformed JSON, bad fields, bad CSRs, foreign names, rate limits."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from service_testlib import (
    CODE,
    ONE_WINDOW,
    ZONE,
    Registry,
    ServiceProcess,
    make_csr,
    seconds_to_window_end,
    write_config,
)

from lancert.pki import SubjectNames, generate_private_key

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def post(
    service: ServiceProcess,
    body: object = None,
    *,
    content: bytes | None = None,
    path: str = "/api/v1/certificates",
    headers: dict[str, str] | None = None,
):
    with service.client() as client:
        if content is not None:
            return client.post(path, content=content, headers=headers or {"content-type": "application/json"})
        return client.post(path, json=body)


def request(uuid: str, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"db_uuid": uuid, "enterprise_code": CODE, "box_id": "box-1", "csr": make_csr()}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def assert_error(response, status: int, code: str, **fields: object) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    for name, value in fields.items():
        assert error[name] == value
    assert "Traceback" not in response.text and 'File "' not in response.text
    return error


def test_body_over_64_kib_is_413(service: ServiceProcess) -> None:
    assert_error(post(service, content=b" " * (64 * 1024 + 1)), 413, "too_large")


def test_body_over_64_kib_without_content_length_is_413(service: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    assert_error(post(service, content=chunks()), 413, "too_large")  # type: ignore[arg-type]


def test_lying_content_length_cannot_smuggle_a_larger_body(service: ServiceProcess) -> None:
    """A raw request claiming 10 bytes but chunked with 70 KiB: the stream, not the header, counts."""
    host, port = service.url.removeprefix("http://").split(":")
    body = b" " * (70 * 1024)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/certificates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_malformed_json_is_400(service: ServiceProcess) -> None:
    assert_error(post(service, content=b'{"db_uuid": '), 400, "invalid_request", field="body")


def test_json_that_is_not_an_object_is_400(service: ServiceProcess) -> None:
    assert_error(post(service, content=b"[1, 2]"), 400, "invalid_request", field="body")


@pytest.mark.parametrize("missing", ["db_uuid", "enterprise_code", "box_id", "csr"])
def test_missing_field_is_400_naming_it(service: ServiceProcess, missing: str) -> None:
    body = request("db")
    del body[missing]
    assert_error(post(service, body), 400, "invalid_request", field=missing)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("db_uuid", 123),
        ("enterprise_code", ["x"]),
        ("box_id", "has space"),
        ("box_id", "x" * 65),
        ("csr", {"pem": "x"}),
        ("db_uuid", ""),
    ],
)
def test_ill_typed_field_is_400_naming_it(service: ServiceProcess, field: str, value: object) -> None:
    assert_error(post(service, request("db", **{field: value})), 400, "invalid_request", field=field)


def test_compatible_call_without_params_is_400(service: ServiceProcess) -> None:
    assert_error(
        post(service, {"jsonrpc": "2.0"}, path="/odoo-enterprise/iot/x509"),
        400,
        "invalid_request",
        field="params",
    )


def test_garbage_csr_is_400(service: ServiceProcess, registry: Registry) -> None:
    error = assert_error(
        post(service, request(registry.add(), csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")),
        400,
        "invalid_csr",
    )
    assert "PEM" in error["message"]


def test_csr_with_bad_signature_is_400(service: ServiceProcess, registry: Registry) -> None:
    der = bytearray(x509.load_pem_x509_csr(make_csr().encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    error = assert_error(post(service, request(registry.add(), csr=tampered)), 400, "invalid_csr")
    assert "signature" in error["message"]


def test_rsa_1024_csr_is_400(service: ServiceProcess, registry: Registry) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    error = assert_error(post(service, request(registry.add(), csr=csr)), 400, "invalid_csr")
    assert "1024" in error["message"]


@pytest.mark.parametrize(
    "names",
    [
        ["*.someone-else.iot.lancert.test"],
        ["www.example.com"],
        ["a.b.{label}.iot.lancert.test"],
        ["{label}.iot.lancert.test"],
    ],
)
def test_csr_for_names_outside_the_box_subdomain_is_403(
    service: ServiceProcess, registry: Registry, names: list[str]
) -> None:
    uuid = registry.add()
    label = post(service, request(uuid)).json()["box_label"]
    csr = make_csr([n.format(label=label) for n in names])
    assert_error(post(service, request(uuid, csr=csr)), 403, "name_not_allowed")


def test_csr_for_an_ip_address_is_403(service: ServiceProcess, registry: Registry) -> None:
    from lancert.pki import create_csr

    csr = create_csr(generate_private_key(), SubjectNames.parse(ips=["192.168.1.25"]))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    assert_error(post(service, request(registry.add(), csr=pem)), 403, "name_not_allowed")


def test_csr_for_its_own_wildcard_and_host_is_accepted(service: ServiceProcess, registry: Registry) -> None:
    uuid = registry.add()
    label = post(service, request(uuid)).json()["box_label"]
    csr = make_csr([f"*.{label}.{ZONE}", f"192-168-1-25.{label}.{ZONE}"])
    assert post(service, request(uuid, csr=csr)).status_code == 200


def test_unknown_path_and_method_answer_json(service: ServiceProcess) -> None:
    with service.client() as client:
        assert_error(client.get("/nothing-here"), 404, "not_found")
        assert_error(client.get("/api/v1/certificates"), 405, "method_not_allowed")


def test_failed_requests_leave_nothing_in_the_database(service: ServiceProcess, registry: Registry) -> None:
    import sqlite3

    uuid = registry.add()
    post(service, request(uuid, csr=make_csr(["www.example.com"])))
    post(service, request(uuid, csr="garbage"))
    with sqlite3.connect(service.data_dir / "service.db") as db:
        count = db.execute("SELECT count(*) FROM issued_certificates WHERE db_uuid = ?", (uuid,)).fetchone()[
            0
        ]
    assert count == 0


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir: Path = tmp_path_factory.mktemp("strict")
    config = write_config(
        data_dir.parent / "strict.toml", failures_per_ip=3, failures_per_database=2, window_seconds=ONE_WINDOW
    )
    process = ServiceProcess(data_dir, ["--config", str(config), "--dns-port", "0"]).start()
    yield process
    process.stop()


def test_repeated_wrong_codes_for_one_database_get_429_with_retry_after(
    strict_service: ServiceProcess,
) -> None:
    uuid = Registry(strict_service.data_dir).add()
    for guess in range(2):
        assert post(strict_service, request(uuid, enterprise_code=f"guess {guess}")).status_code == 403
    limited = post(strict_service, request(uuid, enterprise_code="another guess"))
    error = assert_error(limited, 429, "rate_limited")
    assert "this database" in error["message"]  # 2 failures: the database's limit, not the address's (3)
    assert abs(int(limited.headers["Retry-After"]) - seconds_to_window_end()) <= 3  # when the window ends
    assert error["retry_after"] == int(limited.headers["Retry-After"])
    # Even the right code waits: the guesser must not learn when it found it.
    assert post(strict_service, request(uuid)).status_code == 429


def test_repeated_failures_from_one_address_get_429(strict_service: ServiceProcess) -> None:
    statuses = [post(strict_service, request(f"unknown-{i}")).status_code for i in range(5)]
    assert statuses[:1] == [403] and statuses[-1] == 429
    limited = post(strict_service, request("another-unknown"))
    assert int(limited.headers["Retry-After"]) > 0
    assert "this address" in assert_error(limited, 429, "rate_limited")["message"]
    # The compatible call is slowed down the same way: a 429, the error beside a null ``result``
    # (tests/service/test_field_boxes.py holds what each box code shape makes of it).
    compatible = post(
        strict_service, {"params": {"db_uuid": "x", "enterprise_code": "y"}}, path="/odoo-enterprise/iot/x509"
    )
    assert compatible.status_code == 429
    assert int(compatible.headers["Retry-After"]) > 0
    assert compatible.json()["result"] is None
    refusal = compatible.json()["error"]
    assert refusal["code"] == "rate_limited" and "this address" in refusal["message"]
    assert refusal["retry_after"] == int(compatible.headers["Retry-After"])


def test_openapi_schema_describes_both_apis(service: ServiceProcess) -> None:
    with service.client() as client:
        schema = client.get("/openapi.json").json()
    assert {"/api/v1/certificates", "/odoo-enterprise/iot/x509", "/api/v1/root", "/healthz"} <= set(
        schema["paths"]
    )
    request = schema["components"]["schemas"]["CertificateRequest"]
    assert set(request["required"]) == {"db_uuid", "enterprise_code", "box_id", "csr"}
    responses = schema["paths"]["/api/v1/certificates"]["post"]["responses"]
    assert {"200", "400", "403", "413", "429"} <= set(responses)
