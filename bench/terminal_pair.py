"""Terminal pairing latency (with and without the RSA key pool) and paired mTLS requests per second.

Starts two real terminals (``lancert terminal run``) on loopback: one with ``--key-pool 0`` (every pairing
generates its RSA 2048 key on the spot) and one with the default pool. Each pairing is timed from the
POST to the last byte of the bundle, with the setup code generated (untimed) just before; pairings are
spaced by ``--gap`` seconds, as real pairings are (once per POS), so the pool is full again by the next one.
Then one paired POS calls ``GET /api/v1/status`` over mutual TLS: on one kept-alive connection, with a new
TLS connection (full mTLS handshake) per request, and as WSS messages on one WebSocket.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from lancert.pos import PosClient


def start_terminal(base: Path, pool: int) -> tuple[subprocess.Popen[bytes], dict]:
    state = base / f"terminal-pool{pool}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lancert", "terminal", "run", "--state-dir", str(state), "--port", "0",
         "--key-pool", str(pool)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (state / "screen.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("terminal did not start")
        time.sleep(0.1)
    info = json.loads((state / "screen.json").read_text())
    info["root"] = (state / "ca" / "root.pem").read_text()
    return proc, info


def new_code(info: dict) -> str:
    headers = {"Authorization": f"Bearer {info['token']}"}
    r = httpx.post(info["screen"] + "code", headers=headers, trust_env=False)
    return r.json()["code"]


def pairing_latencies(info: dict, count: int, gap: float) -> list[float]:
    ctx = ssl.create_default_context(cadata=info["root"])
    times = []
    with httpx.Client(verify=ctx, trust_env=False, timeout=30) as client:
        client.get(info["https"] + "root-ca.pem")  # connection and TLS handshake outside the timing
        for i in range(count):
            time.sleep(gap)
            body = {"posId": f"bench-{i}", "setupCode": new_code(info)}
            start = time.perf_counter()
            response = client.post(info["https"], json=body)
            times.append(time.perf_counter() - start)
            assert response.status_code == 200
            assert response.content.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    return times


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rate(seconds: float, call) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairings", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between pairings")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each requests/s run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        procs = []
        try:
            no_pool_proc, no_pool = start_terminal(base, 0)
            pool_proc, pool = start_terminal(base, 4)
            procs = [no_pool_proc, pool_proc]
            time.sleep(2)  # let the pool fill
            results = {}
            for label, info in (("no pool", no_pool), ("pool of 4", pool)):
                lat = pairing_latencies(info, args.pairings, args.gap)
                results[label] = (statistics.median(lat), pct(lat, 95))
            print(f"pairing latency over {args.pairings} pairings (ms):")
            for label, (p50, p95) in results.items():
                print(f"  {label:10s} p50 {p50 * 1000:7.1f}  p95 {p95 * 1000:7.1f}")
            print(f"  p50 ratio no pool / pool: {results['no pool'][0] / results['pool of 4'][0]:.1f}x")

            client = PosClient.pair(pool["https"], pos_id="bench-rps", setup_code=new_code(pool),
                                    directory=base / "pos", ca=pool["root"].encode())
            status_url = pool["https"] + "api/v1/status"
            keep_alive = rate(args.seconds, lambda: client.request("GET", status_url).raise_for_status())

            def fresh_connection() -> None:
                with httpx.Client(verify=client._ssl, trust_env=False) as fresh:
                    fresh.get(status_url).raise_for_status()

            handshake = rate(args.seconds, fresh_connection)
            with client.websocket() as ws:
                def ws_call() -> None:
                    ws.send('{"type": "status"}')
                    ws.recv(timeout=30)
                wss = rate(args.seconds, ws_call)
            print("paired mTLS GET /api/v1/status, one client, sequential (requests/s):")
            print(f"  HTTPS keep-alive          {keep_alive:8.0f}")
            print(f"  HTTPS new TLS each time   {handshake:8.0f}   ({keep_alive / handshake:.1f}x slower)")
            print(f"  WSS messages              {wss:8.0f}")
            client.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
