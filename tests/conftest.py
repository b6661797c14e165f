"""Suite-wide rules.

The ``slow`` marker means "starts a server, a browser or a subprocess", so that ``pytest -m "not slow"`` is
the quick in-process run (well under a minute) that a developer and the mutation run rely on. The rule is
enforced rather than remembered: a test without the marker that starts a process or listens on a socket
fails, naming the marker to add.

``machine_lock(name)`` is for what one machine has once, whatever the test process: the suite runs in two
(``pytest -n 2``), and ``lancert up`` puts its printer on 127.0.0.25:443 as root, or on 8043 when 443 is
taken. Two modules running ``up`` at once made one of them see 8043 (a CI run); each module that runs it
holds the ``"up"`` lock, a file lock in the temporary directory, from its first test to its last.
"""

from __future__ import annotations

import fcntl
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

_MARK_IT = ("this test {what} but is not marked slow: add @pytest.mark.slow (or the module's pytestmark); "
            "see tests/conftest.py")


@contextmanager
def _in_process_only(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("slow") is not None:
        yield
        return
    original_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    original_listen = socket.socket.listen

    def no_child(self: subprocess.Popen[bytes], args: object, *rest: object, **kwargs: object) -> None:
        raise pytest.fail.Exception(_MARK_IT.format(what=f"starts a subprocess ({args!r})"))

    def no_listen(self: socket.socket, *args: object) -> None:
        raise pytest.fail.Exception(_MARK_IT.format(what=f"listens on {self.getsockname()}"))

    subprocess.Popen._execute_child = no_child  # type: ignore[attr-defined]
    socket.socket.listen = no_listen  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original_child  # type: ignore[attr-defined]
        socket.socket.listen = original_listen  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _in_process_only(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _in_process_only(item):
        yield


@pytest.fixture(scope="module", autouse=True)
def _machine_locks(request: pytest.FixtureRequest) -> Iterator[None]:
    names = sorted({marker.args[0] for marker in request.node.iter_markers("machine_lock")})
    with ExitStack() as held:
        for name in names:
            lock = held.enter_context((Path(tempfile.gettempdir()) / f"lancert-tests-{name}.lock").open("w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
