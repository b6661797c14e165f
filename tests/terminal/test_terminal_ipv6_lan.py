"""Issue 24 pt 2 on a real IPv6 LAN: guessers in the POS's own /64 do not keep it from pairing.

A shop's LAN is one /64. The real ``lancert terminal run`` listens on 2001:db8:1:2::1 inside a network
namespace this test makes (``unshare --net``: its only interface is ``lo``, so nothing can leave the
machine); two guessing hosts (::66 and ::67) and the POS (::20) share the /64. One guesser first holds 300
silent connections (more than the connection cap, which counts an IPv6 client by its /64, so the POS is
in the guesser's count), then both flood wrong codes over the real TLS port while the POS pairs with the
code on the screen, three times.

Run as a file (``--probe``), this module is the part inside the namespace: it prints one JSON object.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

PREFIX = "2001:db8:1:2::"
TERMINAL, POS, GUESSERS = PREFIX + "1", PREFIX + "20", (PREFIX + "66", PREFIX + "67")


def _probe() -> dict[str, object]:
    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from terminal_harness import start_terminal, stop_terminal

    interfaces = [line.split(":")[1].strip() for line in
                  subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
                  .splitlines()]
    if interfaces != ["lo"]:
        raise SystemExit(f"not a fresh network namespace: {interfaces}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in (TERMINAL, POS, *GUESSERS):
        subprocess.run(["ip", "-6", "addr", "add", f"{address}/64", "dev", "lo", "nodad"], check=True)
    with tempfile.TemporaryDirectory() as base:
        terminal = start_terminal(Path(base), [sys.executable, "-m", "lancert", "terminal", "run",
                                               "--host", TERMINAL])
        host, port = terminal.https.removeprefix("https://[").rstrip("/").split("]:")
        silent = []
        try:
            for _ in range(300):
                silent.append(socket.create_connection((host, int(port)), source_address=(GUESSERS[0], 0)))
            stop, refused = threading.Event(), []

            def flood(source: str) -> None:
                while not stop.is_set():
                    refused.append(terminal.pair_raw({"posId": "guesser", "setupCode": "22222222"},
                                                     source=source).status_code)

            threads = [threading.Thread(target=flood, args=(s,)) for s in GUESSERS]
            for thread in threads:
                thread.start()
            paired = []
            try:
                for attempt in range(3):
                    code = terminal.code()["code"]
                    count = len(refused)
                    while len(refused) < count + 12:  # both have spent their attempts on this code
                        stop.wait(0.01)
                    answer = terminal.pair_raw({"posId": f"cashier-{attempt}", "setupCode": code}, source=POS)
                    paired.append(answer.status_code)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            terminal.code()  # the screen names who guesses at the code it shows
            for source in GUESSERS:
                for _ in range(6):
                    terminal.pair_raw({"posId": "guesser", "setupCode": "22222222"}, source=source)
            return {"https": terminal.https, "paired": paired, "refused": sorted(set(refused)),
                    "guesses": len(refused), "guessing_from": terminal.current()["guessing_from"]}
        finally:
            for connection in silent:
                connection.close()
            stop_terminal(terminal)


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _namespaces_work(), reason="needs unshare --net (root, as in CI)")]


def test_two_guessers_in_the_pos_64_do_not_keep_it_from_pairing() -> None:
    result = subprocess.run(["unshare", "--net", sys.executable, __file__, "--probe"], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["https"].startswith(f"https://[{TERMINAL}]:")
    assert seen["paired"] == [200, 200, 200]
    assert seen["refused"] == [401] and seen["guesses"] >= 36
    assert sorted(seen["guessing_from"]) == sorted(GUESSERS)


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    print(json.dumps(_probe()))
