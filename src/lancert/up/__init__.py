"""``lancert up``: the whole system on this machine, on loopback, with embedded defaults.

It starts every flow's device (today: the self-signed receipt printer), checks each one's padlock the
way a browser that trusts the right root would, and prints one summary: URL, the file to trust, verdict.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATA_DIR = Path("~/.local/share/lancert/up").expanduser()


@dataclass(frozen=True)
class Device:
    """One device ``up`` runs: where a browser reaches it and what it must trust to get a padlock."""

    name: str
    url: str
    trust_file: Path
    # Names under a managed zone are not in any resolver on a fresh machine: connect here instead.
    connect_ip: str | None = None


@dataclass(frozen=True)
class Verdict:
    device: Device
    padlock: bool
    detail: str


@dataclass
class Stack:
    """What ``up`` started, stopped in reverse order."""

    devices: list[Device] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def stop(self) -> None:
        while self._stops:
            with contextlib.suppress(Exception):
                self._stops.pop()()


def padlock(device: Device, timeout: float = 5.0) -> Verdict:
    """Whether a TLS client that trusts only ``device.trust_file`` accepts the device for its URL's host.

    OpenSSL does the path validation and the name/IP match, with the same rules a browser applies to a
    server certificate (X509_V_FLAG_X509_STRICT catches what browsers refuse and OpenSSL tolerates).
    """
    parts = urlsplit(device.url)
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl.create_default_context(cafile=str(device.trust_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        with socket.create_connection((device.connect_ip or host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            pass
    except ssl.SSLCertVerificationError as exc:
        return Verdict(device, False, exc.verify_message or str(exc))
    except (OSError, ssl.SSLError) as exc:
        return Verdict(device, False, f"cannot connect: {exc}")
    return Verdict(device, True, "secure connection")


@contextlib.contextmanager
def running(data_dir: Path, progress: Callable[[str], None] = lambda _: None) -> Iterator[Stack]:
    """Start every device of the demo under ``data_dir``; stop them all on exit."""
    from lancert.up.printer import start_printer

    stack = Stack()
    try:
        progress("receipt printer: self-signed certificate, HTTPS on 127.0.0.1")
        printer = start_printer(data_dir / "printer")
        stack.on_stop(printer.stop)
        stack.devices.append(Device("receipt printer (self-signed)", printer.url, printer.cert_path))
        yield stack
    finally:
        stack.stop()
