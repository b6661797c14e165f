"""``lancert device``: commands of the self-signed device flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lancert.device.certificate import apple_validity_warning, create_device_certificate
from lancert.pki import KeyKind, summarize

app = typer.Typer(help="Certificates for devices such as receipt printers: self-signed, or the shop CA's.",
                  no_args_is_help=True)


@app.command("create")
def create(
    ip: Annotated[str, typer.Option("--ip", help="The device's IP address (CN and subjectAltName).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where cert.pem and key.pem (0600) are written.")],
    dns: Annotated[
        list[str] | None, typer.Option("--dns", help="An extra DNS name; repeat for more.")
    ] = None,
    years: Annotated[int, typer.Option("--years", help="Validity in years, 1 to 10.")] = 1,
    key: Annotated[KeyKind, typer.Option("--key", help="Key type: ec (P-256) or rsa (2048).")] = KeyKind.EC,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing certificate.")] = False,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="A 'lancert ca init' directory: issued by the shop's CA, not self-signed."),
    ] = None,
) -> None:
    """Make the certificate a device would make for itself, once (or one issued by the shop's CA).

    A self-signed certificate is kept for its whole validity: every browser or POS that trusted it stops
    connecting if it changes, so an existing one is only replaced with --force. With --ca CA the POS
    trust the CA's root instead, so a certificate that CA issued is replaced (renewed) without --force.
    """
    credential = create_device_certificate(
        directory, ip=ip, dns=dns or [], years=years, key_kind=key, force=force, ca=ca
    )
    cert = credential.certificate
    s = summarize(cert)
    warning = apple_validity_warning(cert.not_valid_after_utc - cert.not_valid_before_utc)
    if warning:
        typer.echo(f"lancert: {warning}", err=True)
    typer.echo(f"created {directory / 'cert.pem'} and {directory / 'key.pem'} (mode 0600)")
    typer.echo(f"  names:    {', '.join(s.names)}")
    typer.echo(f"  valid:    {s.not_before} to {s.not_after}")
    typer.echo(f"  sha256:   {s.sha256_fingerprint}")
    if ca is not None:
        typer.echo(f"  issuer:   {s.issuer}")
        typer.echo(f"clients trust the CA's root once: lancert trust install {ca / 'root.pem'} --store nss")
    else:
        typer.echo(f"next: lancert trust install {directory / 'cert.pem'} --store nss")
