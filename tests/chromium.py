"""Headless Chromium for tests: load a page and say whether it loaded without a certificate error.

Reusable by any test (``tests/`` is on pytest's ``pythonpath``: ``from chromium import load``). Chromium
runs with its own HOME, so it reads ``<home>/.pki/nssdb`` as its NSS trust store, and a fresh
user-data-dir per call. Host names are mapped to loopback with ``--host-resolver-rules`` (this works for
IP-literal URLs too: https://192.168.1.25:PORT mapped to 127.0.0.1 reaches the loopback server, checked
in a network namespace with Chromium 156); every other name resolves to nothing, so a test can never
reach a non-loopback address.

    from chromium import load, screenshot
    result = load("https://192.168.1.25:8443/", home=tmp_path, resolve={"192.168.1.25": "127.0.0.1"},
                  marker="hello")
    assert result.ok, result.detail          # detail: "loaded" or e.g. "net::ERR_CERT_AUTHORITY_INVALID"
    screenshot("https://...", tmp_path / "page.png", home=tmp_path, resolve={...})

Detection: ``--dump-dom`` prints the page's DOM; on a certificate error headless Chromium prints
nothing there and logs ``Page load failed: net::ERR_CERT_...`` on stderr, which becomes ``detail``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
)
_LOAD_FAILED = re.compile(r"Page load failed: (\S+)")


@dataclass(frozen=True)
class PageLoad:
    """``ok``: the page loaded (and held ``marker`` if one was given); ``detail``: why not; ``dom``."""

    ok: bool
    detail: str
    dom: str = ""


def resolver_rules(resolve: Mapping[str, str] | None) -> str:
    """``MAP host ip`` for each mapping, then everything else to NOTFOUND (loopback stays reachable)."""
    rules = [f"MAP {host} {ip}" for host, ip in (resolve or {}).items()]
    rules += ["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1", "EXCLUDE localhost", "EXCLUDE [::1]"]
    return ", ".join(rules)


def _run(url: str, extra: list[str], home: Path, resolve: Mapping[str, str] | None,
         timeout: float) -> tuple[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=home)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
           f"--host-resolver-rules={resolver_rules(resolve)}", *extra, url]
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return "", f"timeout after {timeout:g} s\n" + err.decode(errors="replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return out.decode(errors="replace"), err.decode(errors="replace")


def _verdict(dom: str, err: str, marker: str | None) -> PageLoad:
    failed = _LOAD_FAILED.search(err)
    if failed:
        return PageLoad(False, failed.group(1), dom)
    if err.startswith("timeout"):
        return PageLoad(False, err.splitlines()[0], dom)
    if marker is not None and marker not in dom:
        return PageLoad(False, "loaded, but the page lacks the marker", dom)
    return PageLoad(True, "loaded", dom)


def load(url: str, *, home: Path, resolve: Mapping[str, str] | None = None, marker: str | None = None,
         timeout: float = 30.0) -> PageLoad:
    """Open ``url`` once in headless Chromium with ``home`` as HOME (its ``.pki/nssdb`` is the trust)."""
    dom, err = _run(url, ["--dump-dom"], home, resolve, timeout)
    return _verdict(dom, err, marker)


def screenshot(url: str, out_png: Path, *, home: Path, resolve: Mapping[str, str] | None = None,
               size: tuple[int, int] = (1280, 800), timeout: float = 30.0) -> PageLoad:
    """Save a PNG of ``url`` as Chromium renders it; returns the load verdict.

    Headless Chromium renders no certificate interstitial: when the load fails no PNG is written and the
    verdict carries the net error.
    """
    out_png = Path(out_png).resolve()
    extra = [f"--screenshot={out_png}", f"--window-size={size[0]},{size[1]}"]
    _, err = _run(url, extra, home, resolve, timeout)
    return _verdict("", err, None)


def run_script(url: str, script: str, *, home: Path, resolve: Mapping[str, str] | None = None,
               screenshot_png: Path | None = None, timeout: float = 60.0,
               user_agent: str | None = None) -> str:
    """Open ``url``, evaluate ``script`` (an expression; a promise is awaited) over the DevTools protocol,
    and return its value as a string; optionally save a PNG of the page afterwards. ``user_agent``: the
    User-Agent Chromium sends (and ``navigator.userAgent`` says), to be another device.

    This is how a test presses a button and reads what the page shows. Chromium writes the DevTools port
    to ``<user-data-dir>/DevToolsActivePort`` when started with ``--remote-debugging-port=0``.
    """
    import base64
    import json
    import time
    import urllib.request

    from websockets.sync.client import connect

    home.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=home))
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
           "--remote-debugging-address=127.0.0.1", f"--host-resolver-rules={resolver_rules(resolve)}",
           "--window-size=1100,800", *([f"--user-agent={user_agent}"] if user_agent else []), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(home)}, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        port_file = profile / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        page_ws = None
        while page_ws is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            page_ws = pages[0]["webSocketDebuggerUrl"] if pages else None
            if page_ws is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("Chromium opened no page")
                time.sleep(0.05)
        with connect(page_ws, max_size=64 * 1024 * 1024, open_timeout=10) as ws:
            next_id = 0

            def call(method: str, **params: object) -> dict:  # type: ignore[type-arg]
                nonlocal next_id
                next_id += 1
                ws.send(json.dumps({"id": next_id, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                    if message.get("id") == next_id:
                        if "error" in message:
                            raise RuntimeError(f"{method}: {message['error']}")
                        return message["result"]

            # The first document is about:blank; a page that failed to load becomes chrome-error://.
            wait_loaded = ("new Promise(r => { const f = () => (location.href !== 'about:blank' && "
                           "document.readyState === 'complete') ? r(location.href) : setTimeout(f, 50); "
                           "f(); })")
            where = ""
            while not where:
                try:  # the navigation away from about:blank destroys the context an evaluation runs in
                    loaded = call("Runtime.evaluate", expression=wait_loaded, awaitPromise=True,
                                  returnByValue=True)
                except RuntimeError as exc:
                    if "context" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
                    continue
                where = str(loaded["result"].get("value") or "")
            if where.startswith("chrome-error:"):
                raise RuntimeError(f"{url} did not load (a certificate or network error)")
            result = call("Runtime.evaluate", expression=script, awaitPromise=True, returnByValue=True)
            if "exceptionDetails" in result:
                raise RuntimeError(f"script failed: {result['exceptionDetails']}")
            if screenshot_png is not None:
                shot = call("Page.captureScreenshot", format="png")
                Path(screenshot_png).write_bytes(base64.b64decode(shot["data"]))
            return str(result["result"].get("value"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
