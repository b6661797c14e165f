"""Suite-wide rules.

The ``slow`` marker means "starts a server, a browser or a subprocess", so that ``pytest -m "not slow"`` is
the quick in-process run (well under a minute) that a developer and the mutation run rely on. The rule is
enforced rather than remembered: a test without the marker that starts a process or listens on a socket
fails, naming the marker to add.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

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
