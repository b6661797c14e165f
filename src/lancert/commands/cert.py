"""``lancert cert``: look at a certificate, and write it in the format a platform wants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.errors import UsageError
from lancert.pki import (
    CertFormat,
    CertificateSummary,
    export_certificate,
    load_private_key_pem,
    read_certificates,
    summarize,
)
from lancert.storage.files import KEY_MODE, PUBLIC_MODE, atomic_write, check_output_file

app = typer.Typer(help="Show and export certificates.", no_args_is_help=True)


@app.command("show")
def show(
    # readable=False: click's own check prints a multi-line usage box; read_certificate says it in one line.
    file: Annotated[
        Path, typer.Argument(help="A certificate in PEM, .crt or DER, or a .p12 bundle.", readable=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="LANCERT_P12_PASSWORD", help="A .p12 file's password."),
    ] = None,
) -> None:
    """Subject, names, issuer, validity, days left, SHA-256 fingerprint and key type of a certificate.

    A file with several certificates (a chain, a bundle, a .p12) shows each, the first one first; with
    --json the first one's fields, and the others under "others".
    """
    summaries = [summarize(c) for c in read_certificates(file, pkcs12_password=password, accept_pkcs12=True)]
    if as_json:
        first = summaries[0].as_dict()
        if len(summaries) > 1:
            first["others"] = [s.as_dict() for s in summaries[1:]]
        typer.echo(json.dumps(first, indent=2))
        return
    for number, s in enumerate(summaries, 1):
        if len(summaries) > 1:
            if number > 1:
                typer.echo()
            typer.echo(f"Certificate {number} of {len(summaries)}")
        _show_rows(s)


def _show_rows(s: CertificateSummary) -> None:
    # A CA names no hosts and needs none; only a server certificate without names is refused.
    no_names = "(none; a CA certificate needs none)" if s.is_ca else "(none: browsers will reject it)"
    rows = [
        ("Subject", s.subject), ("Names", ", ".join(s.names) or no_names),
        ("Issuer", s.issuer + ("  (self-signed)" if s.self_signed else "")),
        ("Valid from", s.not_before), ("Valid until", s.not_after),
        ("Days left", f"{s.days_left} ({s.status})"), ("Key", s.key_type),
        ("SHA-256", s.sha256_fingerprint), ("Serial", s.serial), ("CA", "yes" if s.is_ca else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k.ljust(width)}  {v}")


@app.command("export")
def export(
    file: Annotated[
        Path, typer.Argument(help="The certificate to export (PEM, .crt or DER).", readable=False)
    ],
    fmt: Annotated[CertFormat, typer.Option("--format", help="crt, pem, der, p12 or mobileconfig.")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="The file to write (its directory must exist).")
    ],
    key: Annotated[
        Path | None, typer.Option("--key", help="p12 only: include this private key.", readable=False)
    ] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="LANCERT_P12_PASSWORD", help="p12 only: the file's password."),
    ] = None,
    legacy: Annotated[
        bool,
        typer.Option("--legacy", help="p12 only: 3DES/SHA-1, for macOS/iOS keychains and old Windows."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Write a certificate as a platform wants it.

    crt: Base64 with CRLF, as browsers export it (Windows, Linux). der: binary (Windows, Android).
    p12: PKCS#12 with a password (and --key if the device needs it; further certificates of FILE go in
    as its chain). mobileconfig: an iOS profile. Only the first certificate of FILE is exported otherwise.
    """
    cert, *chain = read_certificates(file)
    if fmt is not CertFormat.P12 and (key or password or legacy):
        raise UsageError("--key, --password and --legacy apply to --format p12 only")
    if fmt is CertFormat.P12 and not password:
        raise UsageError("--format p12 needs --password (or LANCERT_P12_PASSWORD)")
    private_key = None
    if key is not None:
        try:
            private_key = load_private_key_pem(key.read_bytes())
        except OSError as exc:
            raise UsageError(f"{key}: cannot read ({exc.strerror})") from None
    data = export_certificate(cert, fmt, password=password, key=private_key, chain=chain, legacy=legacy)
    check_output_file(out, force=force)
    atomic_write(out, data, mode=KEY_MODE if private_key else PUBLIC_MODE)
    typer.echo(f"wrote {out} ({fmt.value}, {len(data)} bytes)")
