"""``lancert scan``: a table for people, JSON for scripts, an exit status for monitoring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lancert.check.verdict import TrustSource
from lancert.errors import UsageError
from lancert.scan.scanner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    ScanResult,
    Service,
    default_trust_sources,
    run_scan,
)
from lancert.scan.targets import DEFAULT_PORTS, parse_ports, scan_targets


def _trusted(service: Service) -> str:
    if service.trusted_by:
        return "; ".join(service.trusted_by)
    if not service.trust:
        return "no trust source"
    return "no: " + ", ".join(sorted({str(r) for t in service.trust for r in t["reasons"]}))  # type: ignore[attr-defined]


def _table(result: ScanResult) -> Table:
    table = Table(title=f"TLS services in {result.network} (ports {', '.join(map(str, result.ports))})")
    for column in ("address", "device", "certificate", "issuer", "expires", "trusted", "status"):
        table.add_column(column)
    for s in result.services:
        if not s.certificate:  # not TLS, a stalled handshake, a certificate that cannot be parsed
            what = "no TLS" if s.status == "no-tls" else s.error.split(": ", 1)[-1]
            table.add_row(f"{s.address}:{s.port}", s.kind, what, "", "", "", s.status)
            continue
        c = s.certificate
        names = ", ".join(map(str, c.get("names", []))) or str(c.get("subject"))  # type: ignore[call-overload]
        issuer = "self-signed" if c.get("self_signed") else str(c.get("issuer"))
        fingerprint = str(c.get("sha256_fingerprint"))[:23]
        expires = f"{str(c.get('not_after'))[:10]} ({c.get('days_left')} days)"
        table.add_row(f"{s.address}:{s.port}", s.kind, f"{names}\nSHA-256 {fingerprint}…", issuer, expires,
                      _trusted(s), s.status)
    return table


_PORTS = ",".join(map(str, DEFAULT_PORTS))


def scan(
    cidr: Annotated[str, typer.Argument(help="The range to scan, e.g. 192.168.1.0/24 (at most a /16).")],
    ports: Annotated[str, typer.Option("--ports", help="Comma-separated ports.")] = _PORTS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    warn_days: Annotated[
        int, typer.Option("--warn-days", help="Exit 1 when a certificate expires within N days.")
    ] = 30,
    ca: Annotated[Path | None, typer.Option("--ca", help="Judge trust against this file only.")] = None,
    nssdb: Annotated[Path | None, typer.Option("--nssdb", help="Judge trust by this NSS DB only.")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per connection and handshake.")
    ] = DEFAULT_TIMEOUT,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Connections open at once (1-256).")
    ] = DEFAULT_CONCURRENCY,
    allow_large: Annotated[bool, typer.Option("--allow-large", help="Allow ranges over a /16.")] = False,
) -> None:
    """Find every TLS service in CIDR: its certificate, whether this machine trusts it, what device it is.

    Trust is judged as 'lancert check' does, against the system store and each NSS database of your
    browsers (or only --ca FILE / --nssdb DIR). Exit 0: all fine; 1: a certificate expires within
    --warn-days; 2: something is untrusted or expired.
    """
    if ca is not None and nssdb is not None:
        raise UsageError("give --ca or --nssdb, not both")
    if not 1 <= concurrency <= 256:
        raise UsageError("--concurrency must be between 1 and 256")
    if not 0 < timeout <= 60:
        raise UsageError("--timeout must be between 0 and 60 seconds")
    if warn_days < 0:
        raise UsageError("--warn-days cannot be negative")
    port_list = parse_ports(ports)
    addresses = scan_targets(cidr, allow_large=allow_large)
    if ca is not None:
        sources = [TrustSource.from_ca_file(ca)]
    elif nssdb is not None:
        sources = [TrustSource.from_nssdb(nssdb)]
    else:
        sources = default_trust_sources(Path.home())
    console = Console(stderr=True)
    with console.status(f"scanning {len(addresses)} addresses × {len(port_list)} ports…") as status:
        result = run_scan(addresses, port_list, sources=sources, warn_days=warn_days, network=cidr,
                          timeout=timeout, concurrency=concurrency,
                          progress=lambda done, total: status.update(f"probed {done}/{total}"))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        Console().print(_table(result))
        if not result.services:
            typer.echo("no TLS service found")
    raise typer.Exit(result.exit_status)
