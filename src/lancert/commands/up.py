"""``lancert up``: the README's main command."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lancert.up.lock import data_dir_lock
from lancert.up.system import DEFAULT_DATA_DIR, Verdict, padlock, running

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status


class _Progress:
    """The console and its spinner, made at the first progress message: rich (~30 ms to import) then
    loads after ``up`` has launched its children, which :func:`running` does before its first message,
    instead of delaying that launch (the service's start is the longest path to the summary)."""

    def __init__(self, shown: contextlib.ExitStack, *, stderr: bool) -> None:
        self._shown = shown
        self._stderr = stderr
        self._console: Console | None = None
        self._status: Status | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def update(self, message: str) -> None:
        if self._status is None:
            self._status = self._shown.enter_context(self.console.status(message))
        else:
            self._status.update(message)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()


def _summary(console: Console, verdicts: list[Verdict], notes: list[str]) -> None:
    """One block per device, full paths and URLs unwrapped so they can be copied."""
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)
    for v in verdicts:
        console.print(f"[bold]{v.device.name}[/bold]", soft_wrap=True)
        console.print(f"  URL:      {v.device.url}", soft_wrap=True, highlight=False)
        if v.device.connect_ip:
            console.print(f"  address:  {v.device.connect_ip} (the name resolves through lancert's DNS)",
                          soft_wrap=True, highlight=False)
        console.print(f"  trust:    {v.device.trust_file}", soft_wrap=True, highlight=False)
        if "pairing" in v.device.facts:
            console.print(f"  pairing:  {v.device.facts['pairing']}", soft_wrap=True, highlight=False)
        if "prints_to" in v.device.facts:
            console.print(f"  prints:   'Print test receipt' posts to {v.device.facts['prints_to']}"
                          " (works once the printer's certificate is trusted)", soft_wrap=True,
                          highlight=False)
        if "receipts" in v.device.facts:
            console.print(f"  receipts: {v.device.facts['receipts']}", soft_wrap=True, highlight=False)
        if "client_cert_serial" in v.device.facts:
            console.print(f"  POS cert: serial {v.device.facts['client_cert_serial']}", soft_wrap=True,
                          highlight=False)
        if v.device.connect_ip and not v.device.problem:
            host = v.device.url.split("/")[2].rsplit(":", 1)[0]
            console.print(f"  browser:  chromium --host-resolver-rules='MAP {host} {v.device.connect_ip}' "
                          f"{v.device.url}", soft_wrap=True, highlight=False)
        verdict = "[green]yes[/green]" if v.padlock else "[red]NO[/red]"
        console.print(f"  padlock:  {verdict} ({v.detail})", soft_wrap=True, highlight=False)
    # "yes" was read as "my browser shows a padlock now", while it shows an error until the file is trusted.
    console.print("padlock: yes means a browser that trusts the device's trust file shows a padlock; until "
                  "you trust that file, your browser shows a certificate error.", soft_wrap=True,
                  highlight=False)
    console.print("To trust a file in Chrome/Firefox on Linux: lancert trust install FILE --store nss",
                  soft_wrap=True, highlight=False)


def up(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where every device keeps its state.")
    ] = DEFAULT_DATA_DIR,
    check: Annotated[
        bool, typer.Option("--check", help="Start, verify, print the summary, exit 0 or 1.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON (with --check).")] = False,
) -> None:
    """Run the whole system on this machine (loopback only) and show which device has a padlock.

    Runs until Ctrl-C; with --check it exits after the summary: 0 when every device shows a padlock.
    """
    from lancert.up.stack import interrupts_survive_forks  # imported by running() right after anyway

    interrupts_survive_forks()  # a Ctrl-C during a child's fork is not lost
    # The lock comes first: nothing under data_dir is touched while another up holds it.
    with data_dir_lock(data_dir), contextlib.ExitStack() as shown:
        status = _Progress(shown, stderr=as_json)
        stack = shown.enter_context(running(data_dir, status.update))
        status.update("checking padlocks…")
        # One connection per device, all at once: each check waits on its own handshake (the GIL is free
        # meanwhile), so in turn they added up to 25-40 ms before the summary; the verdicts keep the
        # devices' order.
        with ThreadPoolExecutor(max_workers=len(stack.devices) or 1, thread_name_prefix="up-check") as checks:
            verdicts = list(checks.map(padlock, stack.devices))
        status.stop()
        console = status.console
        if as_json:
            typer.echo(json.dumps([{"device": v.device.name, "url": v.device.url,
                                    "trust_file": str(v.device.trust_file), "padlock": v.padlock,
                                    "detail": v.detail, **v.device.facts} for v in verdicts], indent=2))
        else:
            _summary(console, verdicts, stack.notes)
        ok = all(v.padlock for v in verdicts)
        if check:
            raise typer.Exit(0 if ok else 1)
        console.print("running; Ctrl-C to stop")
        stop = threading.Event()
        # SIGHUP: the terminal up runs in was closed; stop as for Ctrl-C (the children stop with it).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
        # A timed wait: Python runs signal handlers only when the main thread runs again, and an untimed
        # wait could sleep through the one wake-up (CI saw up ignore Ctrl-C for 30 s, its children alive).
        while not stop.wait(0.5):
            pass
        console.print("stopped")
