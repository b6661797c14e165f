"""Headless Firefox (Debian's ``firefox-esr``) for tests, sealed in its own network namespace.

Reusable by any test (``tests/`` is on pytest's ``pythonpath``):

    from firefox import new_profile, visit
    profile = new_profile(home)          # <home>/.mozilla/firefox/lancert.default-release with user.js
    pages = visit(["https://192.168.1.25/", "https://printer.test/"], profile=profile,
                  chain=cert_pem, key=key_pem, marker="hello")
    assert pages[0].ok, pages[0].detail  # detail: "loaded" or e.g. "MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT"

Why a namespace: Firefox talks to Mozilla as it starts (updates, telemetry, remote settings, safe
browsing, captive-portal and connectivity checks, DNS). ``visit`` therefore runs this file as a probe
under ``unshare --net`` (we are root in CI): a fresh network namespace whose only interface is ``lo``.
The probe refuses to go on if it sees any other interface, brings ``lo`` up, gives it 192.168.1.25/32,
and starts the HTTPS server (Python ``ssl``, the given chain and key) on 192.168.1.25:443, Firefox and
the Marionette client, all inside. A URL naming 192.168.1.25 reaches that server; every other address
has no route, so not one packet can leave the machine, whatever Firefox tries. The prefs in
:data:`PREFS` switch those services off as well. Host names: ``network.dns.forceResolve`` makes Firefox
resolve every name to the namespace's address (checked: ``https://printer.test/`` reaches the server
and its name is verified against the certificate).

Driving Firefox: Marionette, Firefox's built-in remote protocol (``--marionette``), through Mozilla's
``marionette-driver`` client from PyPI (geckodriver is not packaged in Debian). Firefox 153 ESR runs as
root with ``--headless`` and no extra environment. Each ``visit`` is one Firefox start (~2 s).

Detection: the session is made with ``acceptInsecureCerts: false``, so ``WebDriver:Navigate`` fails
with "insecure certificate" when Firefox would show its warning page; that page (about:certerror) then
answers ``document.getFailedCertSecurityInfo().errorCodeString``, the mozilla::pkix/NSS error code
(``SEC_ERROR_UNKNOWN_ISSUER``, ``MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT``...), which becomes ``detail``.

Trust: Firefox reads the profile's ``cert9.db``; its first start in a new profile creates it, which is
what lets ``lancert trust install --store nss`` find the profile under ``~/.mozilla/firefox``. Firefox
keeps trust in memory: certutil can change the database while Firefox runs (it does not fail), but the
running Firefox sees the change only after a restart (``tests/trust/test_trust_firefox.py`` shows it).
A step that is a command (a list of arguments) instead of a URL runs inside the namespace between
page loads, with ``HOME`` set to the profile's home, so a test can change trust while Firefox runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
ADDRESS = "192.168.1.25"
PORT = 443
PRINTER_PORT = 8043  # the printer simulator's port inside the namespace (visit(printer_dir=...))
MARIONETTE_PORT = 2828
PROFILE_NAME = "lancert.default-release"

# Every background service that could reach the network, off (the namespace is the real guarantee).
PREFS: dict[str, object] = {
    "marionette.port": MARIONETTE_PORT,
    "network.dns.forceResolve": ADDRESS,
    "network.trr.mode": 5,
    "network.proxy.type": 0,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.region.update.enabled": False,
    "browser.region.network.url": "",
    "browser.search.update": False,
    "services.settings.server": "data:,#remote-settings-disabled",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    "security.certerrors.mitm.priming.enabled": False,
    "security.enterprise_roots.enabled": False,
    "media.gmp-manager.url": "",
    "media.gmp-gmpopenh264.enabled": False,
    "identity.fxaccounts.enabled": False,
    "browser.discovery.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.startup.page": 0,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.sessionstore.resume_from_crash": False,
    "geo.provider.network.url": "",
}


@dataclass(frozen=True)
class PageLoad:
    """``ok``: the page loaded (and held ``marker`` if one was given); ``detail``: why not; ``text``.

    For a command step: ``ok`` is exit status 0, ``detail`` its last stderr line, ``text`` its stdout.
    """

    ok: bool
    detail: str
    text: str = ""


def new_profile(home: Path, name: str = PROFILE_NAME) -> Path:
    """A Firefox profile directory where Firefox looks for one, ``<home>/.mozilla/firefox/<name>``.

    It holds only ``user.js`` (:data:`PREFS`); Firefox's first start adds everything else, ``cert9.db``
    included.
    """
    profile = home / ".mozilla" / "firefox" / name
    profile.mkdir(parents=True, exist_ok=True)
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in PREFS.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")
    return profile


def url(host: str = ADDRESS, path: str = "/") -> str:
    """The URL of the probe's server under ``host`` (every name resolves to :data:`ADDRESS`)."""
    return f"https://{host}{path}" if PORT == 443 else f"https://{host}:{PORT}{path}"


def sealed_namespaces_work() -> bool:
    """Whether this machine lets us make the network namespace Firefox must run in (root, CAP_SYS_ADMIN).

    Without one Firefox is not started at all: its background traffic could reach the real network.
    """
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def visit(steps: Sequence[str | Sequence[str] | Mapping[str, str]], *, profile: Path, chain: Path, key: Path,
          marker: str | None = None, page: Path | None = None, printer_dir: Path | None = None,
          timeout: float = 90.0) -> list[PageLoad]:
    """Start Firefox once with ``profile`` and take ``steps`` in order: URLs to load, commands to run,
    and ``{"url": ..., "script": ...}`` steps that load a page and run an async script in it (the script
    ends by calling ``arguments[arguments.length - 1](value)``; ``text`` is that value).

    HOME is the profile's home (``profile`` is ``<home>/.mozilla/firefox/<name>``); the server serves
    ``chain`` (leaf first) with ``key``, and the HTML in ``page`` if given (else a marker page). With
    ``printer_dir`` the ePOS printer simulator (its certificate in that directory) also runs inside the
    namespace, at ``https://192.168.1.25:8043/``. One :class:`PageLoad` per step. Raises RuntimeError with
    the probe's and Firefox's output when the probe itself fails.
    """
    profile = Path(profile).resolve()
    home = profile.parents[2]
    request = {
        "steps": [s if isinstance(s, str | Mapping) else [str(a) for a in s] for s in steps],
        "profile": str(profile), "home": str(home), "chain": str(Path(chain).resolve()),
        "key": str(Path(key).resolve()), "marker": marker, "log": str(home / "firefox.log"),
        "page": str(Path(page).resolve()) if page else None,
        "printer": str(Path(printer_dir).resolve()) if printer_dir else None,
    }
    cmd = ["unshare", "--net", sys.executable, str(Path(__file__).resolve()), "--probe"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(request), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the probe, the server and Firefox share this group
        out, err = proc.communicate()
        raise RuntimeError(f"firefox probe timed out after {timeout:g} s\n{err}{_log_tail(home)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"firefox probe failed ({proc.returncode})\n{err}{_log_tail(home)}")
    return [PageLoad(*r) for r in json.loads(out)]


def _log_tail(home: Path) -> str:
    log = home / "firefox.log"
    return "\n-- firefox.log --\n" + log.read_text(errors="replace")[-3000:] if log.exists() else ""


# -- the probe: runs inside the namespace ---------------------------------------------------------------
def _isolate(address: str) -> None:
    """Check that only ``lo`` exists (so nothing can leave), bring it up and give it ``address``."""
    # /proc/self/net is per network namespace (/sys/class/net shows the mount namespace's view).
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise SystemExit(f"refusing to start Firefox: not in an empty network namespace ({interfaces})")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)


def _serve(chain: str, key: str, marker: str | None, page_file: str | None, printer: str | None) -> None:
    from lancert.up.printer import serve_page

    page = f"<html><body><p>{marker or 'page'}</p></body></html>".encode()
    serve_page(Path(chain), Path(key), Path(page_file).read_bytes() if page_file else page, host=ADDRESS,
               port=PORT)
    if printer:
        from lancert.printer.device import Printer
        from lancert.printer.server import PrinterServer

        PrinterServer(Printer(Path(printer), ip=ADDRESS), host=ADDRESS, port=PRINTER_PORT).start_in_thread()


def _run_script(client: object, target: str, script: str) -> list[object]:
    loaded = _load(client, target, None)
    if not loaded[0]:
        return loaded
    value = client.execute_async_script(script, script_timeout=30000)  # type: ignore[attr-defined]
    return [True, "ran", str(value)]


def _load(client: object, target: str, marker: str | None) -> list[object]:
    from marionette_driver import errors

    try:
        client.navigate(target)  # type: ignore[attr-defined]
    except errors.InsecureCertificateException:
        try:
            code = client.execute_script(  # type: ignore[attr-defined]
                "return document.getFailedCertSecurityInfo().errorCodeString")
        except errors.MarionetteException as exc:
            code = f"insecure certificate (no error code: {str(exc).splitlines()[0]})"
        return [False, code, ""]
    except errors.MarionetteException as exc:
        return [False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", ""]
    text = client.execute_script("return document.body ? document.body.innerText : ''")  # type: ignore[attr-defined]
    if marker is not None and marker not in text:
        return [False, "loaded, but the page lacks the marker", text]
    return [True, "loaded", text]


def _probe() -> None:
    request = json.load(sys.stdin)
    _isolate(ADDRESS)
    _serve(request["chain"], request["key"], request["marker"], request.get("page"), request.get("printer"))
    env = {**os.environ, "HOME": request["home"], "MOZ_CRASHREPORTER_DISABLE": "1"}
    with open(request["log"], "ab") as log:
        firefox = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", request["profile"]],
            env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    from marionette_driver.marionette import Marionette

    results: list[list[object]] = []
    try:
        client = Marionette(host="127.0.0.1", port=MARIONETTE_PORT)
        client.raise_for_port(timeout=60, check_process_status=False)
        client.start_session({"acceptInsecureCerts": False, "timeouts": {"pageLoad": 20000}})
        for step in request["steps"]:
            if isinstance(step, str):
                results.append(_load(client, step, request["marker"]))
            elif isinstance(step, dict):
                results.append(_run_script(client, step["url"], step["script"]))
            else:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=60, check=False)
                last = done.stderr.strip().splitlines()[-1:] or [""]
                results.append([done.returncode == 0, last[0], done.stdout])
        # Marionette:Quit is the protocol's shutdown; the client's quit() serves only a Firefox it started.
        client._send_message("Marionette:Quit", {"flags": ["eForceQuit"]})
    finally:
        try:
            firefox.wait(timeout=20)
        except subprocess.TimeoutExpired:
            firefox.kill()
            firefox.wait()
    json.dump(results, sys.stdout)


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    _probe()
