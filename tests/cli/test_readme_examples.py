"""The ``sh`` examples of the README and the docs pages, run in order in one directory as a user copies them.

The pages run in the order ``docs/index.md`` lists them (a newcomer's reading order: later pages use the files
earlier ones made, such as ``./printer``).

Only what cannot run here as written is changed, by the rules below (each says why); everything else is
the README's own line:

- every port a README server listens on is mapped to a free port, the same README port to the same free
  port, so two examples that collide in the README collide here too;
- ``https://192.168.1.25`` is the shop's printer: ``./printer``'s certificate is served on 127.0.0.1 and
  the line gets ``--resolve 192.168.1.25:PORT:127.0.0.1`` (tests never reach a LAN address);
- ``sudo ... --store system`` works on a Debian layout in a temporary root (``--system-root``), never
  on this machine's trust;
- ``box diagnose`` asks the zone's DNS as the local resolver too (``--resolver``): the system resolver
  is not on loopback;
- a line ending in ``&`` starts a server in the background, and the next line waits for its ready line
  (as a user would; ``pdns_server`` prints it on stderr); ``lancert up`` without ``--check`` runs until
  Ctrl-C and is left out (the ``--check`` line after it does the same and exits);
- the install and test-suite commands (at the top, and the long fuzzing run: ``.venv/bin/...`` of a
  checkout) are left out: they are the test suite itself;
- ``... | sudo tee -a /etc/hosts`` (the ACME endpoint's name) appends to a private hosts file instead, and
  ``certbot``/``lego`` lines run in a private mount namespace (``unshare --mount``) where that file is
  /etc/hosts: the machine's own /etc/hosts is never changed;
- each line runs in its own ``bash``; a variable a line sets (``CODE=$(...)``) is passed to the next ones.

A line whose comment says ``refused`` must fail with exit 1; every other line must exit 0. Static checks
keep out of ``sh`` blocks what cannot be copied as it is (placeholders, optional arguments in brackets) and
what only runs in production (other hosts, port 53, /etc): those go in a ``text`` block with a sentence.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lancert.loopback import free_port
from lancert.pki import CertificateAuthority, pem
from lancert.up.printer import RunningServer, serve_page

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INDEX = ROOT / "docs" / "index.md"
SERVER_PORT_OPTIONS = re.compile(r"--(?:port|dns-port|http-port|https-port|acme-port) (\d+)")
PRINTER_URL = "https://192.168.1.25"
pytestmark = pytest.mark.machine_lock("up")  # docs/up.md runs `lancert up --check` (tests/conftest.py)


def documents() -> list[Path]:
    """The README, then every page ``docs/index.md`` links to, in its order."""
    listed = re.findall(r"^\d+\. \[[^]]+\]\(([^)]+\.md)\)", INDEX.read_text(), re.MULTILINE)
    pages = [INDEX.parent / name for name in listed]
    assert pages and all(page.is_file() for page in pages), pages
    return [README, *pages]


def _blocks(kind: str) -> list[str]:
    fence = re.compile(rf"```{kind}\n(.*?)```", re.DOTALL)
    return [block for doc in documents() for block in fence.findall(doc.read_text())]


def sh_lines() -> list[str]:
    """Every command line of the ``sh`` blocks, continuation lines joined, comments kept."""
    lines: list[str] = []
    for block in _blocks("sh"):
        pending = ""
        for raw in block.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _command(line: str) -> str:
    return re.split(r"\s#\s", line, maxsplit=1)[0].strip()


def _is_server(line: str) -> bool:
    return bool(re.match(r"lancert (service|dns|box|terminal|printer) run |pdns_server ", _command(line)))


def _listens(line: str) -> bool:
    """A server, or ``dns powerdns`` writing the port its ``pdns_server`` will listen on."""
    return _is_server(line) or _command(line).startswith("lancert dns powerdns ")


def _program(command: str) -> str:
    return "pdns_server" if command.startswith("pdns_server ") else command.split()[1]


def test_readme_servers_listen_on_distinct_ports() -> None:
    taken: dict[int, str] = {}
    collisions = []
    for line in sh_lines():
        if not _listens(line):
            continue
        for port in map(int, SERVER_PORT_OPTIONS.findall(_command(line))):
            if port in taken:
                collisions.append(f"{port}: {taken[port]!r} and {_command(line)!r}")
            taken[port] = _command(line)
    assert taken, "no server examples found in the README"
    assert collisions == []


def test_readme_servers_run_in_the_background() -> None:
    # Copied in order into one shell, a server in the foreground stops every example after it.
    foreground = [_command(ln) for ln in sh_lines() if _is_server(ln) and not _command(ln).endswith("&")]
    assert foreground == []


# What a reader must replace before a line runs: it cannot be copied as it is.
PLACEHOLDER = re.compile(r"…|\[--|<[a-z][a-z-]*>|(?<![$\w])(?:KID|HMAC)\b(?!=)")


def test_readme_sh_examples_hold_no_placeholders() -> None:
    # Optional arguments in brackets, `<pos-port>`, `3f1e…-db`, `KID`: a value from an earlier line instead
    # (`KID=$(...)`), or the example goes in a ```text block with a sentence saying where it runs.
    found = [_command(ln) for ln in sh_lines() if PLACEHOLDER.search(_command(ln))]
    assert found == []


# Hosts a README sh line may reach here: loopback, the printer (mapped to loopback above) and the ACME
# endpoint (mapped by the private /etc/hosts). A page origin given to --allow-origin is a name, not a peer.
REACHABLE = {"127.0.0.1", "192.168.1.25", "acme.iot.example.net"}


def test_readme_sh_examples_stay_on_this_machine() -> None:
    # Production-only examples (Let's Encrypt, port 53 on a public address, /etc/powerdns) belong in a
    # ```text block with a sentence saying where they run, not in an sh block a user copies here.
    outside = []
    for line in sh_lines():
        command = re.sub(r"--allow-origin \S+", "", _command(line))
        hosts = set(re.findall(r"\w+://([^/:\s]+)", command)) - REACHABLE
        if hosts or re.search(r"--dns-port 53\b|--port 53\b|(?<![-\w])/etc/(?!hosts\b)", command):
            outside.append(command)
    assert outside == []


# What each server prints once it answers: the line a user waits for before typing the next command.
READY = {"service": "lancert service: listening on", "dns": "lancert dns: serving",
         "terminal": "Details: HTTPS", "box": "lancert box:", "printer": "lancert printer:",
         # PowerDNS says it on stderr; with one backend per receiver thread (distributor-threads=1, as
         # `lancert dns powerdns` configures it) its last start line is this one, once per thread.
         "pdns_server": "operating unthreaded"}


def _wait_ready(proc: subprocess.Popen[str], marker: str, line: str, timeout: float = 60) -> None:
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for out in proc.stdout:
            lines.append(out)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(marker in out for out in list(lines)):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{line!r} printed no {marker!r} (exit {proc.poll()}): {''.join(lines)}")


def _debian_layout(root: Path) -> None:
    for d in ("etc/ssl/certs", "usr/share/ca-certificates/mozilla", "usr/local/share/ca-certificates"):
        (root / d).mkdir(parents=True)
    distro = CertificateAuthority.create_root("Distribution Root").certificate
    (root / "usr/share/ca-certificates/mozilla/Distribution_Root.crt").write_bytes(pem(distro))
    (root / "etc/ca-certificates.conf").write_text("mozilla/Distribution_Root.crt\n")


class Session:
    """One shell session in ``work``: HOME there too, ``lancert`` the one of this interpreter."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "HOME": str(work), "COLUMNS": "200",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.ports: dict[int, int] = {}
        self.background: list[subprocess.Popen[bytes]] = []
        self.printer: RunningServer | None = None
        self.system_root = work / "system-root"
        self.hosts = work / "etc-hosts"
        self.hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")
        _debian_layout(self.system_root)

    def adapt(self, line: str) -> str:
        command = _command(line)
        for port in map(int, SERVER_PORT_OPTIONS.findall(command)) if _listens(line) else ():
            self.ports.setdefault(port, free_port())
        for readme_port, port in self.ports.items():
            command = re.sub(rf"(?<=[ :]){readme_port}\b", str(port), command)
        if PRINTER_URL in command:
            if self.printer is None:
                device = self.work / "printer"
                self.printer = serve_page(device / "cert.pem", device / "key.pem", b"ePOS printer")
            port = self.printer.port
            command = command.replace(PRINTER_URL, f"{PRINTER_URL}:{port}")
            command += f" --resolve 192.168.1.25:{port}:127.0.0.1"
        if command.startswith("sudo ") and "--store system" in command:
            command = command.removeprefix("sudo ") + f" --system-root {self.system_root}"
        hosts_entry = re.fullmatch(r"echo '([^']+)' \| sudo tee -a /etc/hosts", command)
        if hosts_entry:
            command = f"echo '{hosts_entry.group(1)}' >> {self.hosts}"
        if re.search(r"(^|\s)(certbot|lego)\s", command):
            userns = "" if os.geteuid() == 0 else "--user --map-root-user "
            inner = shlex.quote(f"mount --bind {self.hosts} /etc/hosts && {command}")
            command = f"unshare {userns}--mount -- bash -c {inner}"
        if command.startswith("lancert box diagnose") and "--zone-dns" in command:
            command += " --resolver " + command.split("--zone-dns ", 1)[1].split()[0]
        return command

    def run(self, line: str) -> None:
        command = self.adapt(line)
        if command.endswith("&"):
            program = _program(command)
            stderr = subprocess.STDOUT if program == "pdns_server" else subprocess.DEVNULL
            proc = subprocess.Popen(["bash", "-c", command[:-1]], cwd=self.work, env=self.env, text=True,
                                    stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
            self.background.append(proc)
            _wait_ready(proc, READY[program], line)
            return
        # Each line is its own bash; a shell variable set by one line (CODE=$(...)) is carried over.
        assignment = re.fullmatch(r"([A-Z_]+)=\$\((.*)\)", command)
        result = subprocess.run(["bash", "-c", assignment.group(2) if assignment else command], cwd=self.work,
                                env=self.env, capture_output=True, text=True, timeout=120)
        if assignment:
            self.env[assignment.group(1)] = result.stdout.strip()
        expected = 1 if "refused" in line.split(" # ", 1)[-1] else 0
        assert result.returncode == expected, (f"{line!r} ran as {command!r}: exit {result.returncode}\n"
                                               f"{result.stdout}{result.stderr}")

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.background:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.printer is not None:
            self.printer.stop()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    shell = Session(tmp_path)
    yield shell
    shell.close()


@pytest.mark.slow
def test_readme_examples_run_in_order(session: Session) -> None:
    ran = 0
    for line in sh_lines():
        command = _command(line)
        if ("pip install" in command or command.startswith("bash .ci/run") or command == "lancert up"
                or re.match(r"([A-Z_]+=\S+ )*\.venv/bin/", command)):
            continue
        session.run(line)
        ran += 1
    assert ran >= 35


def test_the_readme_shows_only_commands_that_the_pages_run() -> None:
    # The README's ``console`` blocks are excerpts for a quick read; the pages' ``sh`` blocks run here. An
    # excerpt that no page runs would go stale unnoticed.
    ran = {" ".join(line.split()) for line in sh_lines()}
    shown = [line.strip() for block in re.findall(r"```console\n(.*?)```", README.read_text(), re.DOTALL)
             for line in block.splitlines() if line.strip()]
    assert shown
    assert [line for line in shown if " ".join(line.split()) not in ran] == []


def test_the_readme_stays_short() -> None:
    # A newcomer reads it in two minutes: what lancert is, the two commands, each flow in a few lines.
    assert len(README.read_bytes()) < 25_000


@pytest.mark.slow
def test_a_shortened_documentation_uuid_is_refused_not_registered(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lancert", "service", "db", "add", "--uuid", "3f1e…-db",
                             "--code", "M-12345-XYZ", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == ("lancert: --uuid 3f1e…-db: looks like a shortened placeholder ('…'); give the "
                             "database's full UUID\n")


def test_the_service_config_docstring_example_is_accepted_as_written(tmp_path: Path) -> None:
    # The example TOML in lancert.service.config's docstring is what a provider copies into --config.
    import textwrap

    from lancert.service import config

    doc = config.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n", 1)[1].split('"""', 1)[0]).strip() + "\n"
    path = tmp_path / "service.toml"
    path.write_text(example)
    loaded = config.load_config(path)
    assert (loaded.acme_port, loaded.acme_name) == (8471, "acme.iot.example.net")
    assert (loaded.orders.compatible_deadline, loaded.rate_limit.failures_per_ip) == (3.5, 20)
