"""``lancert up`` and its ports (issue 24 point 8): about 1 start in 50 failed with "address already in
use", because a free port was picked, then bound by a child a second later, after another process had
taken it. The HTTP(S) children bind port 0 themselves, except the service's HTTP port, which up binds
(port 0) and hands down (``--listen-fd``) so that a warm box can be told the URL before the service
runs; the DNS port, one number the box is told, is picked and the service started again on a new pick
when the first was taken."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lancert.loopback import free_port
from lancert.up import stack, terminal


def _hold(port: int) -> list[socket.socket]:
    """Another process's sockets on ``port``, UDP and TCP, as the race leaves it."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(1)
    return [udp, tcp]


@pytest.mark.slow
def test_a_dns_port_taken_between_pick_and_bind_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = free_port()
    held = _hold(taken)
    picks: Iterator[int] = iter([taken, free_port()])
    monkeypatch.setattr(stack, "free_port", lambda: next(picks))
    children: list[stack.Child] = []
    try:
        service = stack.start_service(tmp_path, children)
        assert service.dns_port != taken
        assert len(children) == 1 and children[0].proc.poll() is None
        args = list(children[0].proc.args)  # type: ignore[arg-type]
        assert "--listen-fd" in args and "--port" not in args  # the HTTP port: bound by up, no race
        log = (tmp_path / "logs" / "service.log").read_text()
        assert f"127.0.0.1:{taken}" in log  # the first start's refusal stays in the log
    finally:
        stack.stop_all(children)
        for sock in held:
            sock.close()


@pytest.mark.slow
def test_a_port_taken_for_another_reason_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a taken DNS port is picked again: a service that fails for anything else fails once."""
    (tmp_path / "service").write_text("not a directory")  # --data-dir is a file: the start fails
    picks = [free_port(), free_port()]
    monkeypatch.setattr(stack, "free_port", lambda: picks.pop(0))
    children: list[stack.Child] = []
    try:
        with pytest.raises(stack.LancertError, match="did not start"):
            stack.start_service(tmp_path, children)
        assert len(picks) == 1
    finally:
        stack.stop_all(children)


@pytest.mark.slow
def test_the_terminal_binds_its_own_port(tmp_path: Path) -> None:
    children: list[stack.Child] = []
    try:
        child = terminal.launch_terminal(tmp_path, children)
        args = list(child.proc.args)  # type: ignore[arg-type]
        assert args[args.index("--port") + 1] == "0"
        running = terminal.start_terminal(tmp_path, children, child)
        assert not running.url.endswith(":0/")
    finally:
        stack.stop_all(children)


def _box_state(tmp_path: Path, **state: object) -> None:
    (tmp_path / "box").mkdir(exist_ok=True)
    (tmp_path / "box" / "state.json").write_text(json.dumps(state))


def test_only_a_box_with_a_certificate_not_due_is_started_beside_the_service(tmp_path: Path) -> None:
    """A warm box starts beside the service only when its own start will not call the service: a
    certificate served, no problem, renewal and expiry both more than a minute away."""
    now = datetime.now(UTC)
    later, soon = (now + timedelta(days=30)).isoformat(), (now + timedelta(seconds=20)).isoformat()
    early = stack.box_needs_no_service_to_start
    assert not early(tmp_path)  # no state: a first run
    _box_state(tmp_path, https_url="https://x/", problems=[], renew_after=later, not_after=later)
    assert early(tmp_path)
    _box_state(tmp_path, https_url="https://x/", problems=[], renew_after=soon, not_after=later)
    assert not early(tmp_path)
    _box_state(tmp_path, https_url="https://x/", problems=[], renew_after=later, not_after=soon)
    assert not early(tmp_path)
    _box_state(tmp_path, https_url="https://x/", problems=[{"code": "X"}], renew_after=later,
               not_after=later)
    assert not early(tmp_path)
    _box_state(tmp_path, https_url=None, problems=[], renew_after=later, not_after=later)
    assert not early(tmp_path)
    _box_state(tmp_path, https_url="https://x/", problems=[], renew_after="soon", not_after=later)
    assert not early(tmp_path)
