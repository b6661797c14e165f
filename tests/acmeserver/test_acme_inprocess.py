"""Rules that need a clock or a state the running service cannot be put in from outside, checked on the
ACME app in-process (Starlette's TestClient), built with the same wiring as ``service run``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from acme_harness import ACME_HOST, ZONE, AcmeClient, problem
from starlette.testclient import TestClient

from lancert.pki import SubjectNames, create_csr, generate_private_key
from lancert.service.acmeserver.app import create_acme_app
from lancert.service.acmeserver.build import nonce_secret
from lancert.service.acmeserver.eab import EabKeys
from lancert.service.acmeserver.nonces import NonceBook
from lancert.service.acmeserver.protocol import AcmeServer
from lancert.service.acmeserver.store import AcmeStore
from lancert.service.config import ServiceConfig
from lancert.service.registry import Registry
from lancert.service.server import build_service


@dataclass
class InProcess:
    directory_url: str = f"https://{ACME_HOST}/acme/directory"
    root_pem: Path = Path()


def client_for(tmp_path: Path, order_lifetime: timedelta) -> tuple[AcmeClient, str, EabKeys]:
    service = build_service(ServiceConfig(data_dir=tmp_path, zone=ZONE))
    Registry(service.database).add("db-1", "code-1")
    eab = EabKeys(service.database).create("db-1").as_json()
    server = AcmeServer(service.database, AcmeStore(), EabKeys(service.database),
                        NonceBook(nonce_secret(service.database)), service.authority, service.provisioner,
                        order_lifetime=order_lifetime)
    http = TestClient(create_acme_app(server), base_url=f"https://{ACME_HOST}")
    client = AcmeClient(InProcess(), http=http)  # type: ignore[arg-type]
    assert client.new_account(eab).status_code == 201
    return client, service.authority.box_label("db-1", None), EabKeys(service.database)


def test_an_order_not_finalized_before_it_expires_is_invalid_and_refused(tmp_path: Path) -> None:
    client, label, _ = client_for(tmp_path, timedelta(seconds=-1))  # orders expire at once
    names = [f"web.{label}.{ZONE}"]
    order = client.new_order(names)
    assert order.status_code == 201 and order.json()["status"] == "invalid"
    csr = create_csr(generate_private_key(), SubjectNames.parse(dns=names))
    response = client.finalize(order.json(), csr)
    assert "expired" in problem(response, "orderNotReady")["detail"]


def test_revoking_the_eab_key_shuts_the_accounts_it_opened(tmp_path: Path) -> None:
    client, label, keys = client_for(tmp_path, timedelta(days=1))
    assert client.new_order([f"web.{label}.{ZONE}"]).status_code == 201
    with keys.database.reading_connection() as connection:
        (kid,) = connection.exec_driver_sql("SELECT kid FROM acme_eab_keys").scalars()
    keys.revoke(kid, "db-1")
    response = client.new_order([f"web.{label}.{ZONE}"])
    assert response.status_code == 403
    assert "revoked" in problem(response, "unauthorized")["detail"]


def test_an_order_still_processing_at_its_expiry_reads_invalid(tmp_path: Path) -> None:
    """The instance that was issuing it stopped mid-order (its issuance thread died with it): at the
    order's expiry the order is invalid, not processing for ever, and no Retry-After invites polling."""
    client, label, keys = client_for(tmp_path, timedelta(days=1))
    order = client.new_order([f"web.{label}.{ZONE}"])
    with keys.database.engine.begin() as connection:  # what a stopped instance leaves behind
        connection.exec_driver_sql("UPDATE acme_orders SET status = 'processing'")
    polled = client.post(order.headers["location"])
    assert polled.json()["status"] == "processing" and polled.headers["retry-after"]
    with keys.database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE acme_orders SET expires = '2000-01-01 00:00:00.000000'")
    expired = client.post(order.headers["location"])
    assert expired.json()["status"] == "invalid" and "retry-after" not in expired.headers
