"""``lancert box``: the IoT box agent (run), its status, and the DNS diagnosis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.box.codes import EXPLANATIONS, ErrorCode
from lancert.box.diagnose import diagnose, parse_server
from lancert.box.files import BoxState, check_service_url
from lancert.box.names import name_address
from lancert.dns.names import device_hostname
from lancert.errors import LancertError, UsageError
from lancert.pki import parse_ip

app = typer.Typer(help="The IoT box agent: obtains, renews and serves its HTTPS certificate.",
                  no_args_is_help=True)

StateDir = Annotated[Path, typer.Option("--state-dir", help="The box's state directory (cert, key, state).")]


@app.command("run")
def run(
    state_dir: StateDir,
    server: Annotated[str | None, typer.Option("--server", help="Certificate service URL (saved).")] = None,
    db_uuid: Annotated[str | None, typer.Option("--db-uuid", help="Database UUID (saved).")] = None,
    enterprise_code: Annotated[
        str | None, typer.Option("--enterprise-code", help="Enterprise code (saved, mode 0600).")
    ] = None,
    https_port: Annotated[int, typer.Option("--https-port", help="HTTPS port (0 = any free).")] = 8443,
    http_port: Annotated[int, typer.Option("--http-port", help="Plain HTTP port (0 = any free).")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    lan_ip: Annotated[
        str | None,
        typer.Option("--lan-ip", help="Address in the box's name (default: --host, or if that is 0.0.0.0, "
                                      "the outbound one)."),
    ] = None,
    check_interval: Annotated[float, typer.Option("--check-interval", help="Seconds between checks.")] = 300,
    resolver: Annotated[
        str | None, typer.Option("--resolver", help="LAN resolver IP[:PORT] to diagnose (default: system).")
    ] = None,
    zone_dns: Annotated[
        str | None, typer.Option("--zone-dns", help="DNS diagnosis: the zone's DNS server IP[:PORT].")
    ] = None,
) -> None:
    """Run the box: homepage on plain HTTP at once, HTTPS as soon as it holds a certificate.

    Prints one line when ready: its HTTP and HTTPS addresses and its status.
    """
    from lancert.box.server import run_box

    if lan_ip is not None:
        parse_ip(lan_ip)
    if server:
        check_service_url(server.strip())
    address, unreachable = name_address(host, lan_ip)
    if unreachable:
        typer.echo(f"lancert: warning: {unreachable}", err=True)
    run_box(
        state_dir, host=host, http_port=http_port, https_port=https_port, lan_ip=address,
        saved={"server_url": server, "db_uuid": db_uuid, "enterprise_code": enterprise_code},
        check_interval=check_interval, resolver=parse_server(resolver) if resolver else None,
        zone_server=parse_server(zone_dns) if zone_dns else None,
    )


def _load_state(state_dir: Path) -> BoxState:
    if not (state_dir / "state.json").exists():
        raise UsageError(f"{state_dir}: no box state here (start it with lancert box run --state-dir DIR)")
    return BoxState.load(state_dir)


@app.command("status")
def status(
    state_dir: StateDir,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Status of the last check: OK or the error code, hostname, validity, next renewal."""
    state = _load_state(state_dir)
    error = state.problems[0]["code"] if state.problems else None
    report = {
        "status": state.status, "error_code": error, "hostname": state.hostname, "https_url": state.https_url,
        "not_before": state.not_before, "not_after": state.not_after, "renew_after": state.renew_after,
        "last_check": state.last_check, "serving": state.serving, "problems": state.problems,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"status:       {state.status}")
        typer.echo(f"hostname:     {state.hostname or '-'}")
        typer.echo(f"https url:    {state.https_url or '-'}")
        typer.echo(f"valid:        {state.not_before or '-'} to {state.not_after or '-'}")
        typer.echo(f"next renewal: {state.renew_after or '-'}")
        typer.echo(f"last check:   {state.last_check or '-'}")
        for p in state.problems:
            code = ErrorCode(str(p["code"]).split()[0])
            typer.echo(f"{p['code']}: {p['detail']}")
            typer.echo(f"  meaning: {EXPLANATIONS[code].meaning}")
            typer.echo(f"  fix:     {EXPLANATIONS[code].fix}")
    if state.status != "OK":
        raise typer.Exit(1)


@app.command("diagnose")
def diagnose_command(
    state_dir: StateDir,
    resolver: Annotated[
        str | None, typer.Option("--resolver", help="The LAN's resolver IP[:PORT] (default: the system's).")
    ] = None,
    zone_dns: Annotated[
        str | None, typer.Option("--zone-dns", help="The zone's DNS server IP[:PORT] (default: from NS).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Resolve the box's name through the local resolver and at the zone's DNS; say what blocks it.

    Exit 0 when the name resolves to the box's address; 1 otherwise, naming the case (for example a
    router's DNS-rebinding protection) and what to change.
    """
    state = _load_state(state_dir)
    if not (state.box_label and state.zone and state.lan_ip):
        raise LancertError("the box has no name yet: it gets one with its first certificate")
    hostname = device_hostname(state.lan_ip, state.box_label, state.zone)
    result = diagnose(hostname, state.lan_ip, state.zone,
                      resolver=parse_server(resolver) if resolver else None,
                      zone_server=parse_server(zone_dns) if zone_dns else None)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        typer.echo(f"name:           {result.hostname} (expected {result.expected_ip})")
        typer.echo(f"local resolver: {result.resolver}: "
                   f"{', '.join(result.resolver_answer) or result.resolver_error}")
        zone_answer = ", ".join(result.zone_answer) or result.zone_error
        typer.echo(f"zone DNS:       {result.zone_server or '-'}: {zone_answer}")
        typer.echo(f"verdict:        {result.verdict}")
        typer.echo(result.message)
    if not result.ok:
        raise typer.Exit(1)
