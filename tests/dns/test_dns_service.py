"""The DNS inside ``lancert service run``: ``--dns-workers``, ``caa_issuers`` and ``dns_rate_limit`` from
the config file reach the workers; a worker that dies is replaced."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from dns_testlib import ZONE, answers, ask, start_dns, wire_query, worker_pids

from lancert.errors import UsageError
from lancert.loopback import free_port
from lancert.service.config import load_config
from lancert.up.stack import Child


@pytest.mark.slow
def test_service_run_starts_the_dns_workers_it_is_told(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'zone = "{ZONE}"\ncaa_issuers = ["letsencrypt.org", "ca.example.org"]\n'
                      "dns_rate_limit = 0\n")
    child = Child.start(
        "the service",
        ["service", "run", "--data-dir", str(tmp_path / "data"), "--config", str(config), "--port", "0",
         "--dns-port", str(free_port()), "--dns-workers", "3"],
        tmp_path / "service.log",
    )
    try:
        child.wait_for("listening on http://", 60)
        line = next(line for line in child.lines if " dns for " in line)
        assert "3 workers" in line
        port = int(line.split(" on ", 1)[1].split()[0].rsplit(":", 1)[1])
        assert len(worker_pids(child.proc.pid)) == 3
        assert answers(ask(port, ZONE, "CAA")) == ['0 issue "ca.example.org"', '0 issue "letsencrypt.org"']
        # A burst of 120 identical queries, over the default of 50 a second: all answered whole (0 = off).
        query = wire_query(f"10-0-0-1.box.{ZONE}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.settimeout(2)
            for _ in range(120):
                sock.sendto(query, ("127.0.0.1", port))
            replies = [dns.message.from_wire(sock.recv(4096)) for _ in range(120)]
        assert all(answers(reply) == ["10.0.0.1"] for reply in replies)
    finally:
        child.stop()
    assert "Traceback" not in child.log_text()


@pytest.mark.slow
def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    running = start_dns(tmp_path, workers=1)
    try:
        (first,) = running.service.pids
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running.service.pids == [first] or not all(os.path.exists(f"/proc/{p}")
                                                         for p in running.service.pids):
            assert time.monotonic() < deadline, "no new worker within 10 s"
            time.sleep(0.2)
        assert ask(running.port, f"10-0-0-1.box.{ZONE}", "A").rcode() == dns.rcode.NOERROR
    finally:
        running.stop()


def test_caa_issuers_must_be_ca_domains(tmp_path: Path) -> None:
    for bad in ('"letsencrypt.org"', '["lets encrypt"]', '["ca.example.org;"]', "[1]"):
        config = tmp_path / "bad.toml"
        config.write_text(f"caa_issuers = {bad}\n")
        with pytest.raises(UsageError, match=r"caa_issuers|CAA issuer"):
            load_config(config)
    config = tmp_path / "good.toml"
    config.write_text('caa_issuers = ["LetsEncrypt.org"]\n')
    assert load_config(config).caa_issuers == ("letsencrypt.org",)
