"""Who gets a certificate: every eligibility case, through the native API and the compatible call."""

from __future__ import annotations

import statistics
import time

import pytest
from service_testlib import CODE, ZONE, Registry, ServiceProcess, make_csr

from lancert.pki import load_certificates, load_private_key_pem
from lancert.pki.keys import public_key_matches

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def native(
    service: ServiceProcess, uuid: str, code: str = CODE, box_id: str = "box-1", csr: str | None = None
):
    with service.client() as client:
        return client.post(
            "/api/v1/certificates",
            json={"db_uuid": uuid, "enterprise_code": code, "box_id": box_id, "csr": csr or make_csr()},
        )


def compatible(service: ServiceProcess, uuid: str, code: str = CODE):
    with service.client() as client:
        return client.post(
            "/odoo-enterprise/iot/x509", json={"params": {"db_uuid": uuid, "enterprise_code": code}}
        )


def test_eligible_database_gets_wildcard_chain_for_its_box(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    response = native(service, uuid)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["zone"] == ZONE
    assert body["hostname_pattern"] == f"*.{body['box_label']}.{ZONE}"
    chain = load_certificates(body["certificate_chain_pem"].encode())
    assert len(chain) == 2  # leaf and intermediate, not the root
    assert body["not_before"] < body["renew_after"] < body["not_after"]


def test_unknown_database_and_wrong_code_get_the_same_answer(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    unknown = native(service, "no-such-database")
    wrong = native(service, uuid, code="wrong code")
    assert unknown.status_code == wrong.status_code == 403
    assert (
        unknown.json()
        == wrong.json()
        == {
            "error": {
                "code": "not_eligible",
                "reason": "unknown_database_or_code",
                "message": "unknown database or wrong enterprise code",
            }
        }
    )
    assert unknown.headers.get("content-length") == wrong.headers.get("content-length")


def test_unknown_database_and_wrong_code_take_similar_time(
    service: ServiceProcess, registry: Registry
) -> None:
    """Both run one scrypt; a fast "unknown" path would let codes be probed by timing. Medians of a few
    tries each, compared loosely (a factor of 3), are far from the 30x an unhashed lookup would show."""
    uuid = registry.add()

    def median_time(db: str, code: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert native(service, db, code=code).status_code == 403
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    unknown, wrong = median_time("no-such-database-2", "x"), median_time(uuid, "wrong")
    assert max(unknown, wrong) / min(unknown, wrong) < 3


@pytest.mark.parametrize("kind", ["staging", "duplicate", "development"])
def test_non_production_database_is_refused(service: ServiceProcess, registry: Registry, kind: str) -> None:
    uuid = registry.add("--kind", kind)
    response = native(service, uuid)
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "not_production"
    assert compatible(service, uuid).json()["error"]["reason"] == "not_production"


@pytest.mark.parametrize("status", ["draft", "paused", "closed", "cancelled"])
def test_subscription_not_in_progress_is_refused(
    service: ServiceProcess, registry: Registry, status: str
) -> None:
    """Every status but "in progress" (the command surface's values, written out): a rule that only
    refused "closed" would hand certificates to draft, paused and cancelled subscriptions."""
    uuid = registry.add("--subscription", status)
    response = native(service, uuid)
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "subscription_not_in_progress"
    assert compatible(service, uuid).json()["error"]["reason"] == "subscription_not_in_progress"


def test_iot_box_line_added_later_makes_the_next_request_succeed(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add("--no-iot-line")
    refused = native(service, uuid)
    assert refused.status_code == 403
    assert refused.json()["error"]["reason"] == "no_iot_box_line"
    assert compatible(service, uuid).json()["error"]["reason"] == "no_iot_box_line"
    assert registry.set(uuid, "--iot-line")["iot_box_line"] is True
    assert native(service, uuid).status_code == 200
    assert "x509_pem" in compatible(service, uuid).json()["result"]


def test_box_label_is_stable_per_box_and_differs_between_boxes(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid, other = registry.add(), registry.add()
    first = native(service, uuid, box_id="kitchen").json()["box_label"]
    assert native(service, uuid, box_id="kitchen").json()["box_label"] == first
    assert native(service, uuid, box_id="counter").json()["box_label"] != first
    assert native(service, other, box_id="kitchen").json()["box_label"] != first
    assert uuid.replace("-", "") not in first


def test_compatible_call_answers_in_the_odoo_shape(service: ServiceProcess, registry: Registry) -> None:
    uuid = registry.add()
    response = compatible(service, uuid)
    assert response.status_code == 200
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "error" not in body
    result = body["result"]
    assert set(result) == {"subject_cn", "x509_pem", "private_key_pem"}
    label = result["subject_cn"].split(".")[1]
    assert result["subject_cn"] == f"*.{label}.{ZONE}"
    chain = load_certificates(result["x509_pem"].encode())
    key = load_private_key_pem(result["private_key_pem"].encode())
    assert public_key_matches(key, chain[0].public_key())
    # One label per database for the compatible call (it carries no box identifier), and one pair: every
    # box of the database gets the same certificate and key until its renewal time, as from the field
    # service (one upstream order per renewal, not one per box restart).
    again = compatible(service, uuid).json()["result"]
    assert again == result


def test_compatible_refusal_is_the_native_status_with_a_null_result(service: ServiceProcess) -> None:
    """No 200 refusal suits every Odoo box in the field (tests/service/test_field_boxes.py): a 403, the
    native API's error object, and ``result`` null for the boxes that read only it."""
    response = compatible(service, "no-such-database", code="")
    assert response.status_code == 403
    body = response.json()
    assert body["result"] is None
    assert body["error"] == {
        "code": "not_eligible",
        "message": "unknown database or wrong enterprise code",
        "reason": "unknown_database_or_code",
    }
