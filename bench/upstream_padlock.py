"""Public trust through an upstream ACME CA (the real Pebble, DNS-01 through lancert's DNS): time from a
new box's start to its first padlocked HTTPS answer, against the same box and service with the internal
CA in the same run; and upstream orders per certificate handed out (compatible cache and native).

Padlock: a new box (new database, no state: its first request carries a CSR without names, the service
names the name, the box asks again) is started with ``lancert box run``; the clock stops at the first
``GET /`` answered 200 over TLS verified against the issuer's root (Pebble's from its management port, or
the service's) for ``127-0-0-1.<label>.<zone>``, connected to 127.0.0.1. Runs alternate Pebble/internal.

Orders: ``--databases`` databases, ``--boxes`` compatible calls each (as many field boxes), and as many
native boxes; upstream orders counted in Pebble's own log (``POST /order-plz``).

    .venv/bin/python bench/upstream_padlock.py [--runs 5] [--databases 5] [--boxes 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "tests"),
    str(Path(__file__).resolve().parents[1] / "tests" / "service"),
]

from box_first_padlock import padlocked_get  # noqa: E402
from service_testlib import CODE, ServiceProcess, make_csr  # noqa: E402
from upstream_testlib import Pebble, upstream_service  # noqa: E402

from lancert.loopback import free_port  # noqa: E402
from lancert.service.database import Database  # noqa: E402
from lancert.service.registry import Registry  # noqa: E402

LANCERT = [sys.executable, "-m", "lancert"]


def add_database(service: ServiceProcess, name: str) -> str:
    database = Database(f"sqlite:///{service.data_dir / 'service.db'}")
    Registry(database).add(name, CODE)
    database.dispose()
    return name


def padlock_time(work: Path, service: ServiceProcess, uuid: str, root: Path) -> float:
    state_dir = work / f"box-{service.data_dir.name}-{uuid}"
    https_port = free_port()
    args = [
        "box",
        "run",
        "--state-dir",
        str(state_dir),
        "--server",
        service.url,
        "--db-uuid",
        uuid,
        "--enterprise-code",
        CODE,
        "--lan-ip",
        "127.0.0.1",
        "--http-port",
        "0",
        "--https-port",
        str(https_port),
    ]
    context = ssl.create_default_context(cafile=str(root))
    t0 = time.perf_counter()
    proc = subprocess.Popen([*LANCERT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("box exited")
            try:
                hostname = json.loads((state_dir / "state.json").read_text()).get("hostname")
            except (OSError, ValueError):
                hostname = None
            if hostname and padlocked_get(hostname, https_port, context):
                return time.perf_counter() - t0
            time.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait(10)


def orders_per_certificate(
    pebble: Pebble, service: ServiceProcess, databases: int, boxes: int
) -> dict[str, float]:
    before = pebble.log_text().count("POST /order-plz")
    certificates: set[str] = set()
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for d in range(databases):
            uuid = add_database(service, f"compat-{d}")
            for _ in range(boxes):
                while True:  # a field box asks again after an "issuance_pending" answer
                    reply = client.post(
                        "/odoo-enterprise/iot/x509",
                        json={"params": {"db_uuid": uuid, "enterprise_code": CODE}},
                    ).json()
                    answer = reply["result"]
                    if answer is not None:
                        break
                    assert reply["error"]["code"] == "issuance_pending", reply
                    time.sleep(0.5)
                certificates.add(answer["x509_pem"])
    compatible_orders = pebble.log_text().count("POST /order-plz") - before
    before += compatible_orders
    with httpx.Client(base_url=service.url, timeout=60) as client:
        uuid = add_database(service, "native")
        for b in range(databases):
            body = {"db_uuid": uuid, "enterprise_code": CODE, "box_id": f"box-{b}", "csr": make_csr()}
            label = client.post("/api/v1/certificates", json=body).json()["error"]["box_label"]
            body["csr"] = make_csr([f"*.{label}.iot.lancert.test"])
            assert client.post("/api/v1/certificates", json=body).status_code == 200
    native_orders = pebble.log_text().count("POST /order-plz") - before
    return {
        "compatible_requests": databases * boxes,
        "compatible_certificates": len(certificates),
        "compatible_orders": compatible_orders,
        "native_certificates": databases,
        "native_orders": native_orders,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--databases", type=int, default=5)
    parser.add_argument("--boxes", type=int, default=4)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lancert-bench-upstream-") as tmp:
        work = Path(tmp)
        pebble = Pebble(work / "pebble", free_port()).start()
        acme = upstream_service(work / "acme", pebble.directory, pebble.ca_bundle, dns_port=pebble.dns_port)
        config = work / "internal.toml"
        config.write_text('zone = "iot.lancert.test"\n')
        internal = ServiceProcess(work / "internal", ["--config", str(config), "--dns-port", "0"]).start()
        try:
            pebble_root, internal_root = work / "pebble-root.pem", work / "internal-root.pem"
            pebble_root.write_text(pebble.root_pem())
            internal_root.write_text(
                subprocess.run(
                    [*LANCERT, "service", "root", "--data-dir", str(internal.data_dir)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            upstream_times, internal_times = [], []
            for i in range(opts.runs):
                upstream_times.append(padlock_time(work, acme, add_database(acme, f"pad-{i}"), pebble_root))
                internal_times.append(
                    padlock_time(work, internal, add_database(internal, f"pad-{i}"), internal_root)
                )
            counts = orders_per_certificate(pebble, acme, opts.databases, opts.boxes)
        finally:
            acme.stop()
            internal.stop()
            pebble.stop()
    up, base = statistics.median(upstream_times), statistics.median(internal_times)
    print(
        f"machine: nproc={os.cpu_count()} {platform.machine()} Python {platform.python_version()} "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"first padlock of a new box through Pebble: median {up:.2f} s (min {min(upstream_times):.2f}, "
        f"max {max(upstream_times):.2f}, {opts.runs} runs)"
    )
    print(
        f"same with the internal CA: median {base:.2f} s (min {min(internal_times):.2f}, "
        f"max {max(internal_times):.2f}); ratio {up / base:.2f}x"
    )
    print(
        f"compatible: {counts['compatible_requests']} requests, {counts['compatible_certificates']} "
        f"certificates, {counts['compatible_orders']} upstream orders = "
        f"{counts['compatible_orders'] / counts['compatible_certificates']:.2f} orders per certificate, "
        f"{counts['compatible_orders'] / counts['compatible_requests']:.2f} per request"
    )
    print(
        f"native: {counts['native_certificates']} boxes, {counts['native_orders']} upstream orders = "
        f"{counts['native_orders'] / counts['native_certificates']:.2f} orders per certificate"
    )


if __name__ == "__main__":
    main()
