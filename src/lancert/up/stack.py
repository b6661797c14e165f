"""The provisioned flow of ``lancert up``: the certificate service with its DNS, and one IoT box.

Each runs as its own ``lancert`` process, exactly as a user would start it, so ``up`` exercises the
real command lines; their logs go to files in the data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

from lancert.errors import LancertError
from lancert.loopback import free_port, listen_tcp

# What ``up`` needs only after its children run is imported where used: ``lancert.storage.files`` (with
# it cryptography and the PKI core, ~60 ms), urllib.request (~20 ms: start_service imports it while it
# waits) and secrets. ``up`` launches the service and the terminal right after importing this module,
# and every millisecond before that launch is on the critical path of ``up``'s start while the second
# core idles.

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only makes one call
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None]:
    """What a child of ``up`` runs between fork and exec: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so that
    it gets SIGTERM (and stops cleanly) when ``up`` dies, whatever killed it (SIGHUP from a closed
    terminal, SIGKILL, a crash). Before, ``service run``, ``box run`` and ``terminal run`` lived on under
    PID 1 and the next ``up`` started beside them. If ``up`` died before the call, the child exits at
    once. (The signal follows the thread that forked: ``up`` starts its children from its main thread.)"""
    def set_parent_death_signal() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return set_parent_death_signal


# Ctrl-C while ``up`` starts its children. A child started with a preexec_fn (every child of ``up``:
# _die_with) makes CPython run the ``os.register_at_fork`` callbacks around the fork as Python code,
# logging's among them (its module lock, taken before the fork and released after it in the parent). A
# KeyboardInterrupt that the default SIGINT handler raises inside one is printed as "Exception ignored in:
# <function _releaseLock>" and dropped, and the lock stays taken: ``up`` went on starting and then ran
# until a second Ctrl-C (CI, tests/cli/test_small_edges.py, once in about ten full runs).
_forking = 0
_interrupted = False
_interrupts_owner: int | None = None


def _fork_begins() -> None:
    global _forking
    _forking += 1


def _fork_ended() -> None:
    global _forking
    _forking -= 1


def _forked_child() -> None:
    global _forking
    _forking = 0


_FORK_HOOKS = (_fork_begins.__code__, _fork_ended.__code__)


def _on_sigint(_signum: int, frame: FrameType | None) -> None:
    global _interrupted
    if os.getpid() != _interrupts_owner:
        return  # a child between fork and exec: it is about to become a lancert of its own
    if _forking or (frame is not None and frame.f_code in _FORK_HOOKS):
        _interrupted = True  # raised by Child.start once the fork is over
        return
    raise KeyboardInterrupt


def interrupts_survive_forks() -> None:
    """From now on a Ctrl-C that comes while a child is forked is kept and raised by :meth:`Child.start`
    once the fork is over, instead of being lost in an at-fork callback. For the main thread of a process
    that starts children with ``die_with_parent`` (``up``), before its first child. Our callbacks
    (registered once a process) come after logging's, so they run before its ``before`` and after its
    ``after_in_parent``: every other callback runs inside them. A Ctrl-C handled in one of ours, before
    its count changes, is recognized by its frame."""
    global _interrupts_owner
    if _interrupts_owner != os.getpid():
        _interrupts_owner = os.getpid()
        os.register_at_fork(before=_fork_begins, after_in_parent=_fork_ended, after_in_child=_forked_child)
    signal.signal(signal.SIGINT, _on_sigint)


def lancert_command(*args: str) -> list[str]:
    """The argv of a ``lancert`` subcommand in this interpreter: ``up`` runs every device as a process."""
    return [sys.executable, "-m", "lancert", *args]


@dataclass
class Child:
    """A ``lancert`` process waited on by its ready line: stdout lines are collected, stderr goes to a log.

    Both streams are always consumed (stdout by a thread, stderr by the file), so a chatty child can
    never block on a full pipe however long it runs; ``up`` and the test harnesses start processes this
    one way.
    """

    name: str
    proc: subprocess.Popen[str]
    log_path: Path
    lines: list[str]
    # Notified on every stdout line and at EOF: wait_for wakes at once instead of polling (a poll every
    # 50 ms lost 25 ms on average per child ``up`` waits for).
    said: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(
        cls, name: str, args: list[str], log_path: Path, env: Mapping[str, str] | None = None,
        *, program: Sequence[str] | None = None, die_with_parent: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> Child:
        """Run ``lancert ARGS``; ``program`` replaces ``python -m lancert`` (a test's entry point with
        hooks, tests/lancert_with_hooks.py). ``die_with_parent``: the kernel sends the child SIGTERM
        when this process dies, however it dies (``up``'s children; see :func:`_die_with`)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file: IO[str] = log_path.open("a")
        argv = [*program, *args] if program is not None else lancert_command(*args)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                start_new_session=True, env=None if env is None else dict(env),
                                pass_fds=tuple(pass_fds),
                                preexec_fn=_die_with(os.getpid()) if die_with_parent else None)
        log_file.close()
        child = cls(name, proc, log_path, [])
        threading.Thread(target=child._drain, daemon=True).start()
        global _interrupted
        if _interrupted:  # Ctrl-C came during the fork (interrupts_survive_forks): this child stops too
            _interrupted = False
            child.stop()
            raise KeyboardInterrupt
        return child

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.said:
                self.lines.append(line.rstrip("\n"))
                self.said.notify_all()
        with self.said:
            self.said.notify_all()  # EOF: the child closed stdout (exited)

    def wait_for(self, marker: str, timeout: float = START_TIMEOUT) -> str:
        """The first stdout line holding ``marker``; if the child exits or times out first, stop it and
        say why in one line (the last line of its log), naming the log for the rest."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.said:
            while (left := deadline - time.monotonic()) > 0:
                for line in self.lines[seen:]:
                    if marker in line:
                        return line
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    break
                # Woken by a line or EOF; the timeout bounds a child that exits without closing stdout
                # (its grandchildren hold the pipe).
                self.said.wait(min(left, 0.25))
        self.stop()
        last = next((ln for ln in reversed(self.log_text().splitlines()) if ln.strip()), "")
        why = f" ({last.strip()})" if last else ""
        raise LancertError(f"{self.name} did not start{why}; see {self.log_path}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        stop_all([self])


@dataclass
class ServiceInfo:
    url: str
    dns_port: int
    root: Path
    zone: str
    acme_directory: str | None = None


def demo_database(data_dir: Path) -> tuple[str, str]:
    """The demo's eligible database: registered once, its code kept (0600) for the box."""
    import secrets

    from lancert.storage.files import KEY_MODE, write_json

    path = data_dir / "demo-database.json"
    saved = saved_demo_database(data_dir)
    if saved is not None:
        return saved
    uuid, code = f"demo-{secrets.token_hex(6)}", secrets.token_urlsafe(18)
    result = subprocess.run(
        lancert_command("service", "db", "add", "--uuid", uuid, "--code", code, "--kind", "production",
                 "--subscription", "in_progress", "--iot-line", "--data-dir", str(data_dir / "service")),
        capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise LancertError(f"cannot register the demo database: {result.stderr.strip()}")
    write_json(path, {"uuid": uuid, "code": code}, mode=KEY_MODE)
    return uuid, code


@dataclass
class LaunchedService:
    """``service run`` started, not yet waited for: the child, its URL (its HTTP socket is bound here and
    handed down, so the URL is known before the service runs), the DNS port it was given, and how much
    of its log an earlier start had written (a refusal of this start's port is looked for after it)."""

    child: Child
    url: str
    listener: socket.socket
    dns_port: int
    logged_before: int


def launch_service(data_dir: Path, children: list[Child], listener: socket.socket | None = None
                   ) -> LaunchedService:
    """Start ``service run`` without waiting: ``up`` launches it first, so that its start (the longest
    of all) runs while ``up`` starts the printer, the POS page and a warm box.

    Its HTTP port is bound here (port 0: a free one, no race) and inherited (``--listen-fd``): the URL
    is known at once, and a client that connects before the service serves waits in the backlog instead
    of being refused. ``listener``: the one an earlier attempt bound."""
    log_path = data_dir / "logs" / "service.log"
    listener = listener if listener is not None else listen_tcp("127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    dns_port = free_port()
    logged_before = len(_read(log_path))
    child = Child.start("the certificate service", [
        "service", "run", "--data-dir", str(data_dir / "service"), "--host", "127.0.0.1",
        "--listen-fd", str(listener.fileno()), "--dns-port", str(dns_port), "--dns-workers", "1",
        "--acme-port", "0"], log_path, die_with_parent=True, pass_fds=(listener.fileno(),))
    children.append(child)
    return LaunchedService(child, url, listener, dns_port, logged_before)


def start_service(data_dir: Path, children: list[Child], launched: LaunchedService | None = None
                  ) -> ServiceInfo:
    """The service on a port bound here (:func:`launch_service`) and its ACME port on port 0 (it binds
    it and names it in its ready line), and DNS on a port picked here, since the DNS port is one number
    for UDP and TCP that the box is told; ``launched`` by :func:`launch_service`, or started now.

    A picked DNS port may be taken by another process before the child binds it a second later (about 1
    start of 50 failed with "address already in use"): then the service is started again on a new pick
    (and the same HTTP socket), up to :data:`PORT_ATTEMPTS` times.
    """
    # The client of the root GET below, imported while the service starts rather than after it is ready
    # (~20 ms that were then on the path to the summary).
    import urllib.error
    import urllib.request

    log_path = data_dir / "logs" / "service.log"
    start = launched if launched is not None else launch_service(data_dir, children)
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if attempt > 1:
                start = launch_service(data_dir, children, start.listener)
            child, dns_port = start.child, start.dns_port
            try:
                line = child.wait_for("listening on http://")
                break
            except LancertError:
                said = _read(log_path)[start.logged_before:]
                if attempt == PORT_ATTEMPTS or not _port_taken(said, dns_port):
                    raise
                children.remove(child)
    finally:
        start.listener.close()  # the service holds its own copy; up accepts nothing on it
    url = line.strip().rsplit(" ", 1)[-1]
    zone = next((ln.split(" dns for ", 1)[1].split()[0] for ln in child.lines if " dns for " in ln),
                "iot.lancert.test")
    # From the running service's API (what a box or a browser's admin would fetch): a second
    # 'lancert service root' process would import the whole service stack again, about as long as the
    # service's own start.
    # The standard library's client, no proxies (the service is on loopback): an httpx client loaded its
    # CA bundle for this one plain-HTTP GET, about 30 ms of up's start.
    from lancert.storage.files import atomic_write

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/api/v1/root", timeout=30) as answer:
            root = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise LancertError(f"cannot read the service's root from {url}/api/v1/root: {exc}") from None
    root_path = data_dir / "service-root.pem"
    atomic_write(root_path, root)
    acme = next((ln.split("acme directory ", 1)[1].split()[0] for ln in child.lines
                 if "acme directory" in ln), None)
    return ServiceInfo(url, dns_port, root_path, zone, acme)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _port_taken(log: str, port: int) -> bool:
    """Whether a child's log says it could not bind ``port`` because another socket holds it."""
    return any(f":{port}" in line and "in use" in line.lower() for line in log.splitlines())


def demo_acme_eab(data_dir: Path, uuid: str) -> dict[str, str]:
    """The demo database's EAB pair for ACME clients: made once, kept (0600) beside its code."""
    from lancert.storage.files import KEY_MODE, read_json, write_json

    path = data_dir / "demo-acme-eab.json"
    saved = read_json(path, {})
    if isinstance(saved, dict) and saved.get("db_uuid") == uuid and saved.get("kid"):
        return saved
    result = subprocess.run(
        lancert_command("service", "acme-eab", "--uuid", uuid, "--json",
                        "--data-dir", str(data_dir / "service")),
        capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise LancertError(f"cannot make the demo EAB pair: {result.stderr.strip()}")
    pair = json.loads(result.stdout)
    write_json(path, pair, mode=KEY_MODE)
    return pair


def saved_demo_database(data_dir: Path) -> tuple[str, str] | None:
    """The demo database registered by an earlier run (:func:`demo_database`), if any."""
    from lancert.storage.files import read_json

    saved = read_json(data_dir / "demo-database.json", {})
    if isinstance(saved, dict) and saved.get("uuid") and saved.get("code"):
        return str(saved["uuid"]), str(saved["code"])
    return None


def box_needs_no_service_to_start(data_dir: Path, margin: float = START_TIMEOUT) -> bool:
    """Whether the box's state says it serves a certificate it will not renew for at least ``margin``
    seconds: then its start does not call the service (it reads its certificate and serves it), so
    ``up`` starts it beside the service instead of after it. Any doubt (no state, no certificate, a
    problem, an unreadable time) answers no: the box then starts once the service answers, as on a
    first run. The box decides for itself either way; a call it makes early waits in the service's
    backlog (:func:`launch_service`)."""
    from lancert.storage.files import read_json

    state = read_json(data_dir / "box" / "state.json", {})
    if not isinstance(state, dict) or not state.get("https_url") or state.get("problems"):
        return False
    try:
        renew_after = datetime.fromisoformat(str(state["renew_after"]))
        not_after = datetime.fromisoformat(str(state["not_after"]))
    except (KeyError, ValueError):
        return False
    if renew_after.tzinfo is None or not_after.tzinfo is None:
        return False
    soon = datetime.now(UTC) + timedelta(seconds=margin)
    return renew_after > soon and not_after > soon


def launch_box(data_dir: Path, service_url: str, dns_port: int, uuid: str, code: str,
               children: list[Child]) -> Child:
    """Start ``box run`` for the service at ``service_url`` without waiting for it."""
    dns = f"127.0.0.1:{dns_port}"
    child = Child.start("the IoT box", [
        "box", "run", "--state-dir", str(data_dir / "box"), "--server", service_url, "--db-uuid", uuid,
        "--enterprise-code", code, "--host", "127.0.0.1", "--lan-ip", "127.0.0.1", "--http-port", "0",
        "--https-port", "0", "--resolver", dns, "--zone-dns", dns], data_dir / "logs" / "box.log",
        die_with_parent=True)
    children.append(child)
    return child


def start_box(
    data_dir: Path, service: ServiceInfo, uuid: str, code: str, children: list[Child],
    launched: Child | None = None,
) -> dict[str, object]:
    """Start the box (or take the one :func:`launch_box` started); its state once it answers on both
    ports (OK, or the error code it hit)."""
    child = launched or launch_box(data_dir, service.url, service.dns_port, uuid, code, children)
    child.wait_for("lancert box:")
    from lancert.storage.files import read_json

    state = read_json(data_dir / "box" / "state.json", {})
    return state if isinstance(state, dict) else {}


def stop_all(children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
    """Ask every child to stop at once, then kill what is left after ``timeout`` seconds in all.

    One after the other, three children that each drain their connections could keep Ctrl-C waiting
    for three times as long.
    """
    running = [c for c in reversed(children) if c.proc.poll() is None]
    for child in running:
        with contextlib.suppress(OSError):
            child.proc.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()

