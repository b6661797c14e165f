"""``lancert up``: the whole system on this machine, on loopback, with embedded defaults.

It starts every flow's device (the self-signed receipt printer; the certificate service with its DNS
and an IoT box that provisions itself; a payment terminal with a paired demo POS), checks each one's
padlock the way a browser that trusts the right root would (for the terminal: the way its POS does, one
mutual-TLS call), and prints one summary: URL, the file to trust, verdict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lancert.errors import LancertError
from lancert.storage.locks import BOX_LOCK, SERVICE_LOCK, TERMINAL_LOCK, lock_holder

if TYPE_CHECKING:
    from lancert.up.stack import Child
    from lancert.up.terminal import PosPairing, RunningTerminal

DEFAULT_DATA_DIR = Path("~/.local/share/lancert/up").expanduser()


@dataclass(frozen=True)
class Device:
    """One device ``up`` runs: where a browser reaches it and what it must trust to get a padlock."""

    name: str
    url: str
    trust_file: Path
    # Names under a managed zone are not in any resolver on a fresh machine: connect here instead.
    connect_ip: str | None = None
    # Why the device cannot be checked at all (a box that holds no certificate): the verdict as is.
    problem: str | None = None
    # A verdict reached while starting, for a device a browser check cannot judge: the payment terminal
    # serves its POS over mutual TLS, so its verdict is whether the paired call answered.
    verified: tuple[bool, str] | None = None
    # Device-specific facts for the summary and the JSON (the terminal's pairing), label -> value.
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    device: Device
    padlock: bool
    detail: str


@dataclass
class Stack:
    """What ``up`` started, stopped in reverse order."""

    devices: list[Device] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def stop(self) -> None:
        while self._stops:
            with contextlib.suppress(Exception):
                self._stops.pop()()


def padlock(device: Device, timeout: float = 10.0) -> Verdict:
    """``lancert check``'s verdict for the device, trusting only ``device.trust_file``."""
    if device.problem:
        return Verdict(device, False, device.problem)
    if device.verified is not None:
        return Verdict(device, *device.verified)
    from lancert.check.verdict import TrustSource, check_target
    from lancert.trust.fetch import Target

    parts = urlsplit(device.url)
    host = parts.hostname or ""
    target = Target(host, parts.port or 443, device.connect_ip or host)
    try:
        verdict = check_target(target, TrustSource.from_ca_file(device.trust_file), timeout=timeout)
    except LancertError as exc:
        return Verdict(device, False, str(exc))
    if verdict.secure:
        return Verdict(device, True, "secure connection")
    return Verdict(device, False, "; ".join(r.message for r in verdict.reasons))


def start_trust_page(stack: Stack) -> tuple[str, str]:
    """``trust serve`` for the files the devices' summaries name, on loopback: its URL and the summary's
    note.

    A tablet cannot open a loopback URL: the note says how to serve the same page to the LAN.
    """
    from lancert.loopback import listen_tcp
    from lancert.pki import read_certificate
    from lancert.trust.page import PageServer, TrustPage

    files = list(dict.fromkeys(d.trust_file for d in stack.devices))
    listener = listen_tcp("127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    server = PageServer(TrustPage([(f, read_certificate(f)) for f in files], url), listener).start_in_thread()
    stack.on_stop(server.stop)
    return url, (f"trust page (each device's file and steps): {url}  (QR code {url}qr.png; for the shop's "
                 f"tablets: lancert trust serve {' '.join(str(f) for f in files)} --host 0.0.0.0)")


def refuse_leftovers(data_dir: Path) -> None:
    """Refuse to start beside processes an earlier ``up`` on ``data_dir`` left running (an ``up`` killed
    before its children could be told, by a version without the parent-death signal): each one still
    holds the lock of its directory, which names its PID."""
    owners = (("the certificate service", "service", SERVICE_LOCK), ("the IoT box", "box", BOX_LOCK),
              ("the payment terminal", "terminal", TERMINAL_LOCK))
    left = [(what, pid) for what, sub, lock in owners if (pid := lock_holder(data_dir / sub, lock))]
    if left:
        pids = " ".join(pid for _, pid in left if pid.isdigit())
        raise LancertError(
            f"an earlier 'lancert up' on {data_dir} left {', '.join(f'{w} (PID {p})' for w, p in left)} "
            f"running; stop {'them' if len(left) > 1 else 'it'} (kill {pids}) and start again")


def _terminal_and_pairing(data_dir: Path, children: list[Child], launched: Child
                          ) -> tuple[RunningTerminal, PosPairing]:
    """The launched terminal once it answers, and the demo POS's pairing checked against it."""
    from lancert.up import terminal as payment

    term = payment.start_terminal(data_dir, children, launched)
    return term, payment.pair_demo_pos(data_dir, term)


@contextlib.contextmanager
def running(data_dir: Path, progress: Callable[[str], None] = lambda _: None) -> Iterator[Stack]:
    """Start every device of the demo under ``data_dir``; stop them all on exit."""
    from lancert.up import stack as provisioned
    from lancert.up import terminal as payment

    refuse_leftovers(data_dir)
    stack = Stack()
    stack.notes.append(f"logs: {data_dir / 'logs'} (service.log, box.log, terminal.log)")
    try:
        children: list[provisioned.Child] = []
        stack.on_stop(lambda: provisioned.stop_all(children))
        # The children first, before anything else up does: the service's start is the longest and the
        # box waits for it; the terminal needs nothing from the others. Both come up while up starts the
        # printer and the POS page in its own process.
        terminal_child = payment.launch_terminal(data_dir, children)
        service_child = provisioned.launch_service(data_dir, children)
        # A box whose certificate is not due needs nothing from the service to start: it comes up beside
        # the service (told its URL, known already) instead of after it.
        early = provisioned.saved_demo_database(data_dir)
        box_child = None
        if early is not None and provisioned.box_needs_no_service_to_start(data_dir):
            box_child = provisioned.launch_box(data_dir, service_child.url, service_child.dns_port,
                                               *early, children)
        # The terminal's readiness and the demo POS's pairing check (one mutual-TLS call, about 0.1 s)
        # need nothing from the other devices: a thread does them while up waits for the service and the
        # box, instead of after the box.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="up-terminal")
        stack.on_stop(lambda: pool.shutdown(wait=False, cancel_futures=True))
        terminal_check = pool.submit(_terminal_and_pairing, data_dir, children, terminal_child)

        from lancert.up.printer import PRINTER_ADDRESS, start_pos_demo, start_printer

        progress(f"receipt printer: ePOS simulator, self-signed certificate, HTTPS on {PRINTER_ADDRESS}")
        printer = start_printer(data_dir / "printer")
        stack.on_stop(printer.stop)
        if printer.server.port_note:
            stack.notes.append(f"receipt printer: {printer.server.port_note}")
        stack.devices.append(Device("receipt printer (self-signed)", printer.url, printer.cert_path,
                                    facts={"epos_url": printer.epos_url,
                                           "receipts": str(data_dir / "printer" / "receipts")}))
        pos_page = start_pos_demo(data_dir, printer)
        stack.on_stop(pos_page.stop)
        stack.devices.append(Device("POS demo page (shop CA)", pos_page.url, pos_page.trust_file,
                                    facts={"prints_to": printer.epos_url}))

        progress("certificate service: SQLite, internal CA, DNS on 127.0.0.1")
        service = provisioned.start_service(data_dir, children, service_child)
        stack.notes.append(f"certificate service: {service.url}  (DNS for {service.zone} on "
                           f"127.0.0.1:{service.dns_port})")
        progress("registering the demo database")
        uuid, code = provisioned.demo_database(data_dir)
        if service.acme_directory:
            eab = provisioned.demo_acme_eab(data_dir, uuid)
            stack.notes.append(f"ACME directory: {service.acme_directory}  (EAB kid {eab['kid']}, hmac_key "
                               f"{eab['hmac_key']}; names {', '.join(eab.get('names', []))}; map the host to "
                               f"127.0.0.1, trust {service.root})")
        if box_child is not None and (service.dns_port != service_child.dns_port or (uuid, code) != early):
            box_child.stop()  # the service was started again on another DNS port: the box must be told
            children.remove(box_child)
            box_child = None
        progress("IoT box: obtaining its certificate from the service")
        box = provisioned.start_box(data_dir, service, uuid, code, children, box_child)
        status = str(box.get("status", "?"))
        url = str(box.get("https_url") or f"http://127.0.0.1:{box.get('http_port', '?')}/")
        stack.notes.append(f"IoT box status: {status}; homepage also on http://127.0.0.1:{box.get('http_port')}/")
        problem = None if box.get("https_url") else f"the box has no certificate: {status}"
        stack.devices.append(Device("IoT box (provisioned)", url, service.root, connect_ip="127.0.0.1",
                                    problem=problem))

        progress("payment terminal: its own CA; the demo POS's pairing (paired on the first run)")
        term, pos = terminal_check.result()
        facts = {"pairing": pos.state, "pos_id": pos.pos_id, "pos_dir": str(pos.directory)}
        if pos.serial:
            facts["client_cert_serial"] = pos.serial
        stack.devices.append(Device("payment terminal (paired mTLS)", term.url, term.root,
                                    verified=(pos.answered, pos.detail), facts=facts))
        progress("trust page: every device's file and steps for tablets and phones")
        trust_page, note = start_trust_page(stack)
        stack.notes.append(note)
        printer.server.printer.trust_page = trust_page  # the printer's admin page shows it, with its QR code
        yield stack
    finally:
        stack.stop()
