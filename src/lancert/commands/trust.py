"""``lancert trust``: fetch a device's certificate, put it in trust stores, and say how elsewhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from cryptography import x509

from lancert.box.names import WILDCARD_HOSTS, outbound_ip
from lancert.errors import LancertError, UsageError
from lancert.loopback import listen_tcp
from lancert.pki import fingerprint_sha256, read_certificate, summarize
from lancert.pki.formats import crt
from lancert.storage.files import atomic_write, check_output_file
from lancert.trust.fetch import DEFAULT_TIMEOUT, RESOLVE_HELP, parse_target, served_chain
from lancert.trust.guide import Platform, write_guide
from lancert.trust.java import JavaStore, read_storepass
from lancert.trust.nss import (
    NssStore,
    firefox_refuses,
    nss_databases,
    trust_flags,
)
from lancert.trust.page import BETTER_WITH_A_ROOT, PageServer, TrustPage, qr_text
from lancert.trust.store import TrustStore, is_ca
from lancert.trust.system import SystemStore

app = typer.Typer(help="Fetch device certificates and install them into trust stores.", no_args_is_help=True)


class StoreKind(StrEnum):
    NSS = "nss"
    SYSTEM = "system"
    JAVA = "java"


StoreOpt = Annotated[
    StoreKind | None, typer.Option(
        "--store", help="nss: Chrome/Firefox databases; system: OS anchors; java: a JDK's keystore "
        "(implied by --nssdb, --system-root, --keystore).")
]
NssdbOpt = Annotated[
    Path | None,
    typer.Option("--nssdb", help="One NSS database directory (created if missing), not every browser's."),
]
RootOpt = Annotated[
    Path | None,
    typer.Option("--system-root", help="system store: use the layout under this root (tests, chroots)."),
]
KeystoreOpt = Annotated[
    Path | None,
    typer.Option("--keystore", help="java store: this keystore (default: the cacerts of the JDK of 'java')."),
]
StorepassOpt = Annotated[
    Path | None,
    typer.Option("--storepass-file", help="java store: the keystore password's file (default: changeit)."),
]


@dataclass(frozen=True)
class Where:
    """Which store the command works on, from its options (each applies to one --store only)."""

    store: StoreKind | None
    nssdb: Path | None = None
    system_root: Path | None = None
    keystore: Path | None = None
    storepass_file: Path | None = None
    command: str = "install"

    def kind(self) -> StoreKind:
        """The store: --store, or the one its own option names (--nssdb DIR alone means nss)."""
        given = {StoreKind.NSS: ("--nssdb", self.nssdb),
                 StoreKind.SYSTEM: ("--system-root", self.system_root),
                 StoreKind.JAVA: ("--keystore/--storepass-file", self.keystore or self.storepass_file)}
        store = self.store
        if store is None:
            implied = [kind for kind, (_, value) in given.items() if value is not None]
            if len(implied) != 1:
                raise UsageError(f"Missing option '--store'. Choose from: nss, system, java (see 'lancert "
                                 f"trust {self.command} --help')")
            store = implied[0]
        for kind, (option, value) in given.items():
            if kind is not store and value is not None:
                raise LancertError(f"{option} applies to --store {kind.value} only")
        return store

    def stores(self) -> list[TrustStore]:
        store = self.kind()
        if store is StoreKind.NSS:
            return [NssStore(self.nssdb, create=True)] if self.nssdb else list(nss_databases(Path.home()))
        if store is StoreKind.JAVA:
            return [JavaStore.detect(self.keystore, read_storepass(self.storepass_file))]
        return [SystemStore.detect(self.system_root or Path("/"))]


@app.command("fetch")
def fetch(
    url: Annotated[str, typer.Argument(help="The device's https:// URL, e.g. https://192.168.1.25")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to save the certificate (.crt).")],
    resolve: Annotated[str | None, typer.Option("--resolve", help=RESOLVE_HELP)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = DEFAULT_TIMEOUT,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Save a device's certificate as a browser's "Base64-encoded ASCII, single certificate" export.

    Nothing is verified (that is the point: the device is not trusted yet), so compare the printed
    fingerprint with the one the device shows on its own page or label before installing it.
    """
    check_output_file(out, force=force)  # as cert export: before connecting, and never silently replaced
    leaf = served_chain(parse_target(url, resolve), timeout=timeout, legacy=True)[0]
    atomic_write(out, crt(leaf))
    s = summarize(leaf)
    typer.echo(f"saved {out} (Base64 .crt, {'self-signed' if s.self_signed else 'issued by ' + s.issuer})")
    typer.echo(f"  SHA-256:  {s.sha256_fingerprint}")
    typer.echo(f"  subject:  {s.subject}")
    typer.echo(f"  names:    {', '.join(s.names) or '(none)'}")
    typer.echo(f"  valid:    {s.not_before} to {s.not_after} ({s.status})")
    typer.echo("compare the fingerprint with the device's own page before trusting it")


def _each(stores: list[TrustStore], action: str, change: Callable[[TrustStore], str]) -> None:
    """Apply ``change`` to every store, report each, and fail (exit 1) if any store failed."""
    failures = []
    for st in stores:
        try:
            typer.echo(change(st))
        except LancertError as exc:
            if len(stores) == 1:
                raise  # its own one line says it all (with several stores, each failure is listed first)
            failures.append(str(exc))
            typer.echo(f"FAILED {st.description}: {exc}", err=True)
    if failures:
        raise LancertError(f"{action} failed in {len(failures)} of {len(stores)} stores: {failures[0]}")


@app.command("install")
def install(
    file: Annotated[Path, typer.Argument(help="The certificate to trust (PEM, .crt or DER).")],
    store: StoreOpt = None,
    nssdb: NssdbOpt = None,
    system_root: RootOpt = None,
    keystore: KeystoreOpt = None,
    storepass_file: StorepassOpt = None,
) -> None:
    """Trust a certificate: a device's own one as peer and anchor (NSS CP,,), a CA as a root (C,,).

    In a Java keystore it becomes a trusted entry named "lancert <CN> <SHA-256 prefix>". Every store is
    checked after the change; a failure is reported, never silent.
    """
    where = Where(store, nssdb, system_root, keystore, storepass_file)
    store = where.kind()  # a missing --store is a usage error before any file is read
    cert = read_certificate(file)
    stores = where.stores()
    extra = f" (trust {trust_flags(cert)})" if store is StoreKind.NSS else ""

    def add(st: TrustStore) -> str:
        st.install(cert)
        return f"trusted in {st.description}{extra}"

    _each(stores, "install", add)
    if store is StoreKind.JAVA:
        typer.echo("restart the Java applications that were running so they see the change")
    else:
        typer.echo("restart the browsers that were open so they see the change")
    if store is StoreKind.NSS and firefox_refuses(cert):
        typer.echo("warning: this is a CA certificate naming hosts (a device serving its own CA:TRUE "
                   "certificate?): Chromium accepts it, Firefox refuses it whatever the trust "
                   "(MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY); give the device a CA:FALSE certificate",
                   err=True)


def _to_remove(what: str, stores: list[TrustStore]) -> x509.Certificate:
    """A certificate file, else the label or fingerprint that ``trust list`` printed."""
    path = Path(what)
    if path.exists():
        return read_certificate(path)
    for st in stores:
        for entry in st.list():
            if entry.certificate is not None and entry.matches(what):
                return entry.certificate
    raise LancertError(f"{what}: no such file, and no label or SHA-256 fingerprint of what lancert installed "
                       f"in {', '.join(st.description for st in stores)} (see 'lancert trust list')")


@app.command("remove")
def remove(
    what: Annotated[str, typer.Argument(
        metavar="FILE|LABEL|SHA256",
        help="The certificate to stop trusting: its file, or the label or fingerprint 'trust list' shows.")],
    store: StoreOpt = None,
    nssdb: NssdbOpt = None,
    system_root: RootOpt = None,
    keystore: KeystoreOpt = None,
    storepass_file: StorepassOpt = None,
) -> None:
    """Stop trusting a certificate that 'trust install' added (found by its content, not its name)."""
    stores = Where(store, nssdb, system_root, keystore, storepass_file, "remove").stores()
    cert = _to_remove(what, stores)
    _each(stores, "remove",
          lambda st: f"{'removed from' if st.uninstall(cert) else 'was not in'} {st.description}")


@app.command("list")
def list_(
    store: StoreOpt = None,
    file: Annotated[Path | None, typer.Argument(help="Only say whether this certificate is trusted.")] = None,
    nssdb: NssdbOpt = None,
    system_root: RootOpt = None,
    keystore: KeystoreOpt = None,
    storepass_file: StorepassOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The certificates lancert installed, per store; with FILE, whether that one is trusted in each.

    With FILE the exit status is 0 only when it is trusted in every store listed.
    """
    stores = Where(store, nssdb, system_root, keystore, storepass_file, "list").stores()
    if file is not None:
        cert = read_certificate(file)
        states = [(st.description, st.check(cert)) for st in stores]
        if as_json:
            typer.echo(json.dumps([{"store": d, "trusted": t} for d, t in states], indent=2))
        else:
            for description, trusted in states:
                typer.echo(f"{'trusted    ' if trusted else 'not trusted'}  {description}")
        if not all(t for _, t in states):
            raise typer.Exit(1)
        return
    entries = [e for st in stores for e in st.list()]
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        typer.echo("no lancert certificates in " + ", ".join(st.description for st in stores))
    for e in entries:
        cert = e.certificate
        expiry = (f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({summarize(cert).status})  "
                  f"SHA-256 {fingerprint_sha256(cert)}" if cert else "unreadable")
        typer.echo(f"{e.trust:<6} {e.label}  ({e.store})\n       {expiry}")


@app.command("guide")
def guide(
    file: Annotated[Path, typer.Argument(help="The certificate to trust (PEM, .crt or DER).")],
    os_: Annotated[Platform, typer.Option("--os", help="windows, macos, linux, android or ios.")],
    out_dir: Annotated[
        Path | None, typer.Option("-o", "--out-dir", help="Where to write the file (default: beside FILE).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Write the file a platform wants and print the exact steps to trust it there."""
    cert = read_certificate(file)
    g = write_guide(cert, file, os_, out_dir)
    if as_json:
        typer.echo(json.dumps(g.as_dict(), indent=2))
        return
    typer.echo(f"{g.platform.value}: wrote {g.file} ({g.format.value})")
    for number, step in enumerate(g.steps, 1):
        typer.echo(f"  {number}. {step}")
    for warning in g.warnings:
        typer.echo(f"  warning: {warning}")


DEFAULT_SERVE_PORT = 8090


def page_url(host: str, port: int, url: str | None) -> str:
    """``--url`` checked, else ``http://HOST:PORT/``; listening on every address (``0.0.0.0``, ``::``)
    the URL carries the address this machine reaches the LAN from."""
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url {url}: expected the page's address as the devices open it, such as "
                             "http://192.168.1.10:8090/")
        return url
    shown = outbound_ip() if host in WILDCARD_HOSTS else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


@app.command("serve")
def serve(
    files: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="The certificates to offer (a shop root, ideally).")],
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; 0.0.0.0 (every address) for the shop's tablets.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = DEFAULT_SERVE_PORT,
    url: Annotated[str | None, typer.Option(
        "--url", help="The page's address as devices open it, for the QR code (default: http://HOST:PORT/).")
    ] = None,
) -> None:
    """Serve a page from which each device gets the right file and steps (plain HTTP, on purpose).

    The page recognises iPhone/iPad, Android, Windows, macOS and Linux from the browser's User-Agent and
    offers that platform's file (a .mobileconfig profile, a CA certificate, a DER .cer, ...) with the steps
    of 'trust guide'; every other platform is one link away. It shows each certificate's SHA-256 to compare,
    and a QR code of the page's URL (also at /qr.png) for tablets and phones. Runs until Ctrl-C.
    """
    certificates = [(file, read_certificate(file)) for file in files]
    listener = listen_tcp(host, port)
    shown = page_url(host, listener.getsockname()[1], url)
    server = PageServer(TrustPage(certificates, shown), listener)
    for file, cert in certificates:
        if not is_ca(cert):
            typer.echo(f"lancert: warning: {file} {BETTER_WITH_A_ROOT}", err=True)

    def ready() -> None:
        typer.echo(f"lancert trust serve: {shown} (plain HTTP on purpose; QR code "
                   f"{shown.rstrip('/')}/qr.png; listening on {host}:{server.port})")
        typer.echo(qr_text(shown), nl=False)

    asyncio.run(server.serve(ready))  # until SIGINT or SIGTERM (the serving layer's handlers)
