"""``lancert ca``: a local CA (root and intermediate) on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lancert.ca.directory import CADirectory
from lancert.ca.issue import csr_requested_names, issue_device_certificate
from lancert.device.certificate import apple_validity_warning, validity_for_years
from lancert.errors import LancertError, UsageError
from lancert.pki import KeyKind, SubjectNames, fingerprint_sha256, generate_private_key, load_csr, summarize
from lancert.pki.issuing import MAX_COMMON_NAME
from lancert.storage.files import Credential, CredentialFiles, check_output_file, write_certificates

app = typer.Typer(help="A local certificate authority.", no_args_is_help=True)


@app.command("init")
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where the CA's certificates and keys go.")],
    name: Annotated[str | None, typer.Option(
        "--name", metavar="SHOP", help="The shop's name, in the root's name beside user@host.")] = None,
) -> None:
    """Make a root CA and an intermediate in DIR (keys mode 0600). Refuses if DIR already holds one.

    The root is named "lancert [SHOP] Root CA (user@host)" after who made it, so two shops' roots (or a
    test root and the real one) can be told apart in every certificate manager.
    """
    label = f"lancert {name.strip()}" if name and name.strip() else "lancert"
    if len(f"{label} Intermediate CA") > MAX_COMMON_NAME:
        raise UsageError(f"--name: at most {MAX_COMMON_NAME - len('lancert  Intermediate CA')} characters")
    ca = CADirectory(directory)
    intermediate = ca.create(label)
    typer.echo(f"root:         {ca.root_path}  (SHA-256 {fingerprint_sha256(intermediate.root)})")
    typer.echo(f"  named:      {intermediate.root.subject.rfc4514_string()}")
    typer.echo(f"intermediate: {directory / 'intermediate.pem'}")
    typer.echo(f"trust it with: lancert trust install {ca.root_path} --store nss")


@app.command("issue")
def issue(
    directory: Annotated[Path, typer.Option("--dir", help="The CA made by 'lancert ca init'.")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="OUTDIR: cert.pem (+ key.pem when lancert makes the key).")
    ],
    csr: Annotated[
        Path | None, typer.Option("--csr", help="A device's CSR (PEM or DER): its key stays on the device.")
    ] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="The device's IP address (without --csr).")] = None,
    dns: Annotated[
        list[str] | None, typer.Option("--dns", help="An extra DNS name; repeat for more.")
    ] = None,
    years: Annotated[int, typer.Option("--years", help="Validity in years, 1 to 10.")] = 1,
    key: Annotated[
        KeyKind, typer.Option("--key", help="Key type when lancert makes it: ec or rsa.")
    ] = KeyKind.EC,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTDIR's cert.pem and key.pem.")] = False,
) -> None:
    """Issue a device's server certificate from the shop's CA (its intermediate signs).

    With --csr the names come from the CSR (subjectAltName, else its Common Name) and only OUTDIR/cert.pem
    is written: install it on the device with its own key. With --ip [--dns ...] lancert makes the key too
    (OUTDIR/key.pem, mode 0600). cert.pem holds the leaf and the intermediate, what the device serves.
    Re-issuing (a renewal, a new key) needs no change on the POS side: they trust the CA's root.
    """
    if (csr is None) == (ip is None):
        raise UsageError("give --csr FILE or --ip IP (with optional --dns), not both or neither")
    if csr is not None and dns:
        raise UsageError("--dns goes with --ip; with --csr the names come from the CSR")
    validity = validity_for_years(years)
    if out.is_dir():  # as cert export: a device's certificate (and key) is not replaced silently
        for name in ("cert.pem",) if csr is not None else ("cert.pem", "key.pem"):
            check_output_file(out / name, force=force)
    authority = CADirectory(directory).load()
    if csr is not None:
        try:
            request = load_csr(csr.read_bytes())
        except OSError as exc:
            raise LancertError(f"{csr}: cannot read ({exc.strerror})") from None
        names = csr_requested_names(request)
        chain = issue_device_certificate(authority, request.public_key(), names, validity=validity)
        write_certificates(out / "cert.pem", chain)
        written = f"{out / 'cert.pem'}"
    else:
        names = SubjectNames.parse(dns=dns or [], ips=[ip or ""])
        private_key = generate_private_key(key)
        chain = issue_device_certificate(authority, private_key.public_key(), names, validity=validity)
        CredentialFiles(out).write(Credential(chain, private_key))
        written = f"{out / 'cert.pem'} and {out / 'key.pem'} (mode 0600)"
    leaf = chain[0]
    warning = apple_validity_warning(leaf.not_valid_after_utc - leaf.not_valid_before_utc)
    if warning:
        typer.echo(f"lancert: {warning}", err=True)
    s = summarize(leaf)
    typer.echo(f"issued {written}")
    typer.echo(f"  names:    {', '.join(s.names)}")
    typer.echo(f"  valid:    {s.not_before} to {s.not_after}")
    typer.echo(f"  sha256:   {s.sha256_fingerprint}")
    root = CADirectory(directory).root_path
    typer.echo(f"clients trust the root once: lancert trust install {root} --store nss")
