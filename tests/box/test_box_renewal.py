"""Renewal: driven by the service's short lifetimes; no connection dropped; crash-safe at every step."""

from __future__ import annotations

import json
import signal
import ssl

import pytest
from box_harness import CODE, Service, wait_for

from lancert.check.verdict import TrustSource, check_target
from lancert.trust.fetch import Target

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_renewal_swaps_certificate_without_dropping_open_connections(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    first = box.state()["fingerprint"]
    # Keep-alive connections opened before the renewal, each with one request done.
    connections = [box.connection(service.root) for _ in range(4)]
    old_leaves = []
    for conn in connections:
        conn.request("GET", "/status.json")
        assert conn.getresponse().read()
        old_leaves.append(conn.sock.getpeercert(binary_form=True))
    # The box's timer renews at the service's renew_after (20 s after issue with 120 s lifetimes).
    assert wait_for(lambda: box.state()["fingerprint"] != first, timeout=60)
    for conn, leaf in zip(connections, old_leaves, strict=True):
        sock = conn.sock
        conn.request("GET", "/status.json")
        state = json.loads(conn.getresponse().read())
        assert conn.sock is sock  # the same TLS connection, not a reconnect
        assert sock.getpeercert(binary_form=True) == leaf
        assert state["fingerprint"] != first
        conn.close()
    _, _, new_leaf = box.https(service.root)
    assert new_leaf != old_leaves[0]  # new handshakes get the renewed certificate
    assert box.proc.poll() is None  # no restart
    assert box.state()["status"] == "OK"


@pytest.mark.parametrize("point", ["key_staged", "cert_staged", "between_renames", "before_state_saved"])
def test_box_killed_during_renewal_serves_a_valid_certificate_at_next_start(
    make_box, service: Service, point: str
) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    box.stop()
    state_path = box.state_dir / "state.json"
    state = json.loads(state_path.read_text())
    state["renew_after"] = "2000-01-01T00:00:00+00:00"  # renewal due at the next start
    state_path.write_text(json.dumps(state))
    box.hooks = ["--kill-at", point]
    box.start(expect_ready=False)
    assert box.proc.wait(30) == -signal.SIGKILL
    assert f"killing the box at {point}" in box.child.log_text()
    box.hooks = []
    box.start()
    assert box.state()["status"] == "OK"
    verdict = check_target(Target(str(box.state()["hostname"]), box.https_port, "127.0.0.1"),
                           TrustSource.from_ca_file(service.root))
    assert verdict.secure, verdict.reasons
    served = verdict.chain[0].fingerprint(__import__("cryptography").hazmat.primitives.hashes.SHA256())
    assert served.hex(":").upper() == box.state()["fingerprint"]
    leftovers = sorted(p.name for p in box.state_dir.iterdir() if p.name.endswith((".new", ".tmp")))
    assert leftovers == []


def test_a_deployed_box_ignores_crash_switches_in_its_environment(make_box, service: Service) -> None:
    """The crash points are reachable only through the test-only entry point: the variable older versions
    obeyed (LANCERT_BOX_KILL_AT) must not kill a real box in the middle of a renewal."""
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    first = box.state()["fingerprint"]
    box.stop()
    state_path = box.state_dir / "state.json"
    state = json.loads(state_path.read_text())
    state["renew_after"] = "2000-01-01T00:00:00+00:00"  # renewal due at the next start
    state_path.write_text(json.dumps(state))
    box.env = {"LANCERT_BOX_KILL_AT": "key_staged,cert_staged,between_renames,before_state_saved"}
    box.start()
    assert box.proc.poll() is None
    assert box.state()["status"] == "OK"
    assert box.state()["fingerprint"] != first  # renewed, through every step


def test_https_refuses_plain_clients_nothing_else_breaks(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    with pytest.raises(ssl.SSLCertVerificationError):
        box.https(box.state_dir / "cert.pem")  # the leaf alone is no trust anchor
    assert box.https(service.root)[0] == 200
