"""``lancert check``: exit 0 only where a browser would show a padlock; otherwise exit 2 and say why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.check.verdict import TrustSource, check_target
from lancert.errors import LancertError
from lancert.pki import fingerprint_sha256
from lancert.trust.fetch import DEFAULT_TIMEOUT, RESOLVE_HELP, parse_target
from lancert.trust.java import read_storepass

NOT_SECURE_EXIT = 2


def check(
    url: Annotated[str, typer.Argument(help="The https:// URL a browser would open.")],
    ca: Annotated[Path | None, typer.Option("--ca", help="Trust only the certificates in FILE.")] = None,
    nssdb: Annotated[Path | None, typer.Option("--nssdb", help="Trust what this NSS DB trusts.")] = None,
    keystore: Annotated[Path | None, typer.Option(
        "--keystore", help="Trust what Java trusts with this keystore (cacerts, a trustStore).")] = None,
    storepass_file: Annotated[Path | None, typer.Option(
        "--storepass-file", help="--keystore's password file (default: changeit).")] = None,
    resolve: Annotated[str | None, typer.Option("--resolve", help=RESOLVE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = DEFAULT_TIMEOUT,
) -> None:
    """The padlock verdict for URL, with every reason a browser would warn.

    Exit 0: secure. Exit 2: not secure (each reason is listed). Exit 1: nobody answered, or bad input.
    Without --ca, --nssdb or --keystore the system's CA bundle is the trust source.
    """
    if sum(source is not None for source in (ca, nssdb, keystore)) > 1:
        raise LancertError("give one of --ca, --nssdb and --keystore")
    if storepass_file is not None and keystore is None:
        raise LancertError("--storepass-file goes with --keystore")
    target = parse_target(url, resolve)
    if ca is not None:
        trust = TrustSource.from_ca_file(ca)
    elif nssdb is not None:
        trust = TrustSource.from_nssdb(nssdb)
    elif keystore is not None:
        trust = TrustSource.from_keystore(keystore, read_storepass(storepass_file))
    else:
        trust = TrustSource.system()
    verdict = check_target(target, trust, timeout=timeout)
    if as_json:
        typer.echo(json.dumps(verdict.as_dict(), indent=2))
    else:
        state = "secure" if verdict.secure else "NOT SECURE"
        typer.echo(f"{target.display}: {state} (trust: {trust.description})")
        if verdict.chain:
            typer.echo(f"  certificate SHA-256 {fingerprint_sha256(verdict.chain[0])}")
        for reason in verdict.reasons:
            typer.echo(f"  - {reason.code}: {reason.message}")
    if not verdict.secure:
        raise typer.Exit(NOT_SECURE_EXIT)
