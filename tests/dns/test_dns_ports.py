"""The DNS port belongs to one server (issue 24 point 7): ``lancert dns run`` refuses a port that another
process's DNS already holds, instead of joining it and letting the kernel split the queries between the
two; and from the moment the port is bound no query is lost, so the ready line means "answering"."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import dns.message
import pytest
from dns_testlib import ZONE, answers, ask

from lancert.loopback import free_port
from lancert.up.stack import Child

pytestmark = pytest.mark.slow

NAME = f"10-0-0-1.box.{ZONE}"


def _dns_run(tmp_path: Path, port: int, name: str, workers: int = 2) -> Child:
    return Child.start(name, ["dns", "run", "--zone", ZONE, "--port", str(port), "--workers", str(workers),
                              "--rate-limit", "0"], tmp_path / f"{name}.log")


def _refused_start(tmp_path: Path, port: int) -> tuple[int, str]:
    """Run a second ``lancert dns run`` on ``port``: its exit status and its stderr."""
    second = _dns_run(tmp_path, port, "second")
    try:
        status = second.proc.wait(30)
    finally:
        second.stop()
    return status, second.log_text()


def _all_answer_themselves(port: int) -> None:
    """40 queries from 40 source ports (the issue's count): every one answered with the address."""
    for index in range(40):
        reply = ask(port, f"10-0-0-{index + 1}.box.{ZONE}")
        assert answers(reply) == [f"10.0.0.{index + 1}"]


def test_dns_run_refuses_a_port_another_dns_run_holds(tmp_path: Path) -> None:
    port = free_port()
    first = _dns_run(tmp_path, port, "first")
    try:
        first.wait_for("lancert dns: serving", 60)
        status, log = _refused_start(tmp_path, port)
        assert status != 0
        lines = [line for line in log.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("lancert: "), log
        assert str(port) in lines[0] and "in use" in lines[0]
        _all_answer_themselves(port)  # the first server still has the port alone
    finally:
        first.stop()


def test_dns_run_refuses_the_port_of_the_services_dns(tmp_path: Path) -> None:
    port = free_port()
    service = Child.start("the service", [
        "service", "run", "--data-dir", str(tmp_path / "data"), "--port", "0", "--dns-port", str(port),
        "--dns-workers", "2", "--zone", ZONE], tmp_path / "service.log")
    try:
        service.wait_for("listening on http://", 90)
        status, log = _refused_start(tmp_path, port)
        assert status != 0
        assert log.strip().startswith("lancert: ") and len(log.strip().splitlines()) == 1, log
        _all_answer_themselves(port)
    finally:
        service.stop()


def test_no_query_is_lost_while_the_workers_start(tmp_path: Path) -> None:
    """Queries sent every 5 ms from fresh source ports while ``dns run`` starts 4 workers: a query that
    finds the port not yet bound is refused (ICMP port unreachable), every other one is answered,
    however soon it came; and once the ready line is printed, answers come at once."""
    port = free_port()
    outcomes: list[str] = []
    stop = threading.Event()

    def one(index: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port))
            sock.settimeout(5)
            query = dns.message.make_query(f"10-0-0-{index % 250 + 1}.box.{ZONE}", "A")
            sock.send(query.to_wire())
            try:
                reply = dns.message.from_wire(sock.recv(4096))
                outcomes.append("answered" if answers(reply) == [f"10.0.0.{index % 250 + 1}"] else "wrong")
            except ConnectionRefusedError:
                outcomes.append("refused")
            except TimeoutError:
                outcomes.append("lost")

    def load() -> None:
        threads = []
        index = 0
        while not stop.is_set():
            thread = threading.Thread(target=one, args=(index,))
            thread.start()
            threads.append(thread)
            index += 1
            time.sleep(0.005)
        for thread in threads:
            thread.join()

    loader = threading.Thread(target=load)
    loader.start()
    child = _dns_run(tmp_path, port, "starting", workers=4)
    try:
        child.wait_for("lancert dns: serving", 60)
        ready_at = time.monotonic()
        reply = ask(port, NAME)
        assert time.monotonic() - ready_at < 0.5 and answers(reply) == ["10.0.0.1"]
        time.sleep(1.0)
    finally:
        stop.set()
        loader.join(30)
        child.stop()
    assert outcomes.count("answered") > 100
    assert outcomes.count("lost") == 0 and outcomes.count("wrong") == 0, (
        f"{outcomes.count('lost')} of {len(outcomes)} queries unanswered while the port was bound")
