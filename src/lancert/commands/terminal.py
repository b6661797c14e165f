"""``lancert terminal``: run a payment terminal, tap Generate Code, fetch its root, unpair a POS."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from lancert.errors import LancertError
from lancert.logs import LogLevel, LogLevelOption, configure_logging
from lancert.pki import fingerprint_sha256
from lancert.storage.files import read_json
from lancert.terminal.device import DEFAULT_NAME, TERMINAL_FILE, TerminalState
from lancert.terminal.screen import SCREEN_FILE
from lancert.wire.pairing import check_pos_id

app = typer.Typer(help="The payment-terminal side of paired mutual TLS.", no_args_is_help=True)

StateDir = Annotated[Path, typer.Option("--state-dir", help="The terminal's state directory.")]
NameOption = Annotated[str, typer.Option("--name", help="The terminal's DNS name in its certificate.")]


@app.command("run")
def run(
    state_dir: StateDir,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (HTTPS and WSS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 = any free.", min=0, max=65535)] = 8443,
    name: NameOption = DEFAULT_NAME,
    screen_port: Annotated[int, typer.Option(
        "--screen-port", help="Loopback port of the screen page; 0 = any.", min=0, max=65535)] = 0,
    key_pool: Annotated[int, typer.Option("--key-pool", help="Pre-generated RSA keys kept ready; 0 = none.",
                                          min=0, max=64)] = 4,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Serve pairing and the mTLS API on one port until interrupted (activates the terminal if needed)."""
    from lancert.terminal.server import run_terminal

    configure_logging(log_level)

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise LancertError(f"--host must be an IP address, not {host!r}") from None
    run_terminal(state_dir, host=host, port=port, name=name, screen_port=screen_port, key_pool_size=key_pool)


@app.command("activate")
def activate(
    state_dir: StateDir,
    name: NameOption = DEFAULT_NAME,
) -> None:
    """Make the terminal's CA (root and intermediate), so it can pair POS systems."""
    state = TerminalState(state_dir)
    ca = state.activate(name=name)
    typer.echo(f"terminal activated; root CA {state.ca_dir.root_path}")
    typer.echo(f"  SHA-256 {fingerprint_sha256(ca.root)}")


def _not_running(state_dir: Path) -> str:
    return f"terminal is not running (start it: lancert terminal run --state-dir {state_dir})"


def _screen(state_dir: Path) -> dict[str, Any]:
    info = read_json(state_dir / SCREEN_FILE)
    hint = _not_running(state_dir)
    if not isinstance(info, dict) or "screen" not in info or "token" not in info:
        raise LancertError(hint)
    if urlsplit(str(info["screen"])).hostname != "127.0.0.1":
        raise LancertError(f"{state_dir / SCREEN_FILE}: the screen must be on 127.0.0.1")
    return info


def _screen_request(state_dir: Path, method: str, path: str) -> dict[str, Any]:
    # httpx (~0.1-0.25 s to import here) only for this client of the screen: 'terminal run', which
    # 'lancert up' waits for, never calls it.
    import httpx

    info = _screen(state_dir)
    try:
        response = httpx.request(method, str(info["screen"]).rstrip("/") + path,
                                 headers={"Authorization": f"Bearer {info['token']}"}, timeout=10)
    except httpx.HTTPError:
        raise LancertError(_not_running(state_dir)) from None
    if response.status_code != 200:
        raise LancertError(f"terminal screen answered {response.status_code}")
    return response.json()


@app.command("code")
def code(
    state_dir: StateDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    current: Annotated[bool, typer.Option("--current", help="Show the code on screen; make none.")] = False,
) -> None:
    """Tap "Generate Code" on the running terminal: print the code, its seconds left, and the Details."""
    state = _screen_request(state_dir, *(("GET", "/state") if current else ("POST", "/code")))
    if current and not state.get("code"):
        if as_json:
            typer.echo(json.dumps(state, indent=2))
        raise LancertError("no code on screen; run: lancert terminal code --state-dir " + str(state_dir))
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    typer.echo(f"code:      {state['code']}")
    typer.echo(f"refreshes: in {state['seconds_left']} s")
    typer.echo(f"HTTPS:     {state['https']}")
    typer.echo(f"WSS:       {state['wss']}")
    typer.echo(f"port:      {state['port']}")
    typer.echo(f"root CA:   SHA-256 {state['root_sha256']}")


@app.command("root-ca")
def root_ca(state_dir: StateDir) -> None:
    """Print the terminal's root CA certificate (PEM), which a POS trusts to verify the terminal."""
    typer.echo(TerminalState(state_dir).root_pem().decode(), nl=False)


@app.command("unpair")
def unpair(
    state_dir: StateDir,
    pos_id: Annotated[str, typer.Option("--pos-id", help="The POS to revoke.")],
) -> None:
    """Revoke a POS: its certificate stops working at once, also on a running terminal."""
    check_pos_id(pos_id)
    if not (state_dir / TERMINAL_FILE).is_file():  # a mistyped directory was a 40-line traceback
        raise LancertError(f"{state_dir}: no terminal state here (start one: lancert terminal run "
                           f"--state-dir {state_dir})")
    TerminalState(state_dir).registry.remove(pos_id)
    typer.echo(f"unpaired posId {pos_id}")
