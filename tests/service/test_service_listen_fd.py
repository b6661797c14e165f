"""``service run --listen-fd``: the service serves HTTP on a listening socket its parent bound (``lancert
up`` binds it so it can tell the box the URL before the service runs). A client that connects before
the service serves waits in the socket's backlog and is answered, never refused; a descriptor that is
not a listening TCP socket on --host is refused in one line."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lancert.up.stack import Child
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # subprocesses


def _service(tmp_path: Path, listener: socket.socket, *extra: str) -> Child:
    return Child.start("service", ["service", "run", "--data-dir", str(tmp_path / "service"),
                                   "--host", "127.0.0.1", "--listen-fd", str(listener.fileno()),
                                   "--dns-port", "0", *extra],
                       tmp_path / "service.log", pass_fds=(listener.fileno(),))


def test_a_request_made_before_the_service_serves_is_answered_on_the_inherited_socket(
    tmp_path: Path,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    child = _service(tmp_path, listener)
    listener.close()  # the service holds its own copy
    try:
        # At once, while the child still imports: the connection is accepted into the backlog.
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        client.request("GET", "/healthz")
        answer = client.getresponse()
        assert answer.status == 200
        assert b"ok" in answer.read().lower()
        client.close()
        line = child.wait_for("listening on http://")
        assert line.endswith(f"http://127.0.0.1:{port}")
    finally:
        child.stop()


def test_a_descriptor_that_is_not_a_listening_socket_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as unbound:
        fd = unbound.fileno()
        result = subprocess.run(
            [sys.executable, "-m", "lancert", "service", "run", "--data-dir", str(tmp_path / "service"),
             "--listen-fd", str(fd), "--dns-port", "0"],
            capture_output=True, text=True, timeout=60, pass_fds=(fd,))
    assert result.returncode == 1
    assert result.stderr == f"lancert: --listen-fd {fd}: not a listening TCP socket\n"
    assert not (tmp_path / "service").exists()


def test_a_socket_bound_to_another_address_than_host_is_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.2", 0)) as other:
        fd = other.fileno()
        result = subprocess.run(
            [sys.executable, "-m", "lancert", "service", "run", "--data-dir", str(tmp_path / "service"),
             "--host", "127.0.0.1", "--listen-fd", str(fd), "--dns-port", "0"],
            capture_output=True, text=True, timeout=60, pass_fds=(fd,))
    assert result.returncode == 1
    assert result.stderr == f"lancert: --listen-fd {fd}: bound to 127.0.0.2, not to --host 127.0.0.1\n"


def test_port_and_listen_fd_together_are_refused(tmp_path: Path) -> None:
    result = lancert("service", "run", "--data-dir", str(tmp_path / "service"), "--port", "0",
                     "--listen-fd", "3", check=False)
    assert result.returncode != 0
    assert "give --port or --listen-fd, not both" in result.stderr
