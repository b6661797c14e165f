"""``lancert ca``: a local CA (root and intermediate) on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lancert.ca import CADirectory
from lancert.pki import fingerprint_sha256

app = typer.Typer(help="A local certificate authority.", no_args_is_help=True)


@app.command("init")
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where the CA's certificates and keys go.")],
    name: Annotated[str, typer.Option("--name", help="The CA's display name.")] = "lancert",
) -> None:
    """Make a root CA and an intermediate in DIR (keys mode 0600). Refuses if DIR already holds one."""
    ca = CADirectory(directory)
    intermediate = ca.create(name)
    typer.echo(f"root:         {ca.root_path}  (SHA-256 {fingerprint_sha256(intermediate.root)})")
    typer.echo(f"intermediate: {directory / 'intermediate.pem'}")
    typer.echo(f"trust it with: lancert trust install {ca.root_path} --store nss")
