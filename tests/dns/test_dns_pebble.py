"""A real ACME CA (Debian's Pebble) validates a DNS-01 challenge through PowerDNS as ``lancert dns
powerdns`` configures it: the challenge TXT written with the service's ``add_txt_record``, the CA asked
after ``wait_until_visible``, as the upstream-ACME issuer does."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import josepy
import pytest
from acme import challenges, client, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dns_testlib import ZONE, PowerDNS, RunningDNS, start_dns

from capabilities import required_for_module
from lancert.loopback import free_port
from lancert.pki import SubjectNames, create_csr, generate_private_key
from lancert.service.dnsrecords import add_txt_record, remove_txt_records, wait_until_visible
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

_capability = required_for_module(
    shutil.which("pebble") is not None and shutil.which("pdns_server") is not None,
    "needs Debian's pebble and pdns-server",
)
LABEL = "k7m2q9xd4a1b"


@pytest.fixture(scope="module")
def pebble_through_powerdns(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, RunningDNS]]:
    """Pebble (its TLS certificate made by lancert) resolving through PowerDNS fed by lancert."""
    root = tmp_path_factory.mktemp("pebble")
    data_dir, config_dir, dns_port = root / "data", root / "pdns", free_port()
    embedded = start_dns(data_dir, workers=1)  # the service's database, migrated
    lancert("dns", "powerdns", "--out", str(config_dir), "--data-dir", str(data_dir), "--zone", ZONE,
            "--port", str(dns_port))
    powerdns = PowerDNS(config_dir, dns_port)
    tls = root / "pebble-tls"
    lancert("device", "create", "--ip", "127.0.0.1", "--dns", "localhost", "--dir", str(tls))
    port = free_port()
    (root / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{free_port()}",
        "certificate": str(tls / "cert.pem"), "privateKey": str(tls / "key.pem"),
        "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = (root / "pebble.log").open("w")
    pebble = subprocess.Popen(
        ["pebble", "-config", str(root / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )
    directory = f"https://127.0.0.1:{port}/dir"
    deadline = time.monotonic() + 30
    while True:
        try:
            trust = ssl.create_default_context(cafile=str(tls / "cert.pem"))
            httpx.get(directory, verify=trust, timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            assert pebble.poll() is None and time.monotonic() < deadline, (root / "pebble.log").read_text()
            time.sleep(0.2)
    yield directory, tls / "cert.pem", embedded
    pebble.terminate()
    pebble.wait(10)
    log.close()
    powerdns.stop()
    embedded.stop()


def test_pebble_validates_dns01_through_powerdns(
    pebble_through_powerdns: tuple[str, Path, RunningDNS],
) -> None:
    directory_url, pebble_cert, service = pebble_through_powerdns
    account_key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    network = client.ClientNetwork(account_key, alg=josepy.ES256, verify_ssl=str(pebble_cert))
    acme = client.ClientV2(messages.Directory.from_json(network.get(directory_url).json()), network)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    name = f"*.{LABEL}.{ZONE}"
    csr = create_csr(generate_private_key(), SubjectNames.parse(dns=[name]))  # type: ignore[arg-type]
    order = acme.new_order(csr.public_bytes(serialization.Encoding.PEM))
    (authorization,) = order.authorizations
    challenge = next(c for c in authorization.body.challenges if isinstance(c.chall, challenges.DNS01))
    txt_name = challenge.chall.validation_domain_name(f"{LABEL}.{ZONE}")
    add_txt_record(service.database, txt_name, challenge.chall.validation(account_key))
    wait_until_visible()
    acme.answer_challenge(challenge, challenge.chall.response(account_key))
    deadline = time.monotonic() + 30
    while True:
        status = acme.poll(authorization)[0].body.status
        if status in (messages.STATUS_VALID, messages.STATUS_INVALID):
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    remove_txt_records(service.database, txt_name)
    assert status == messages.STATUS_VALID
