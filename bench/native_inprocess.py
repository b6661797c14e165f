"""CPU of the service's native API per certificate, in-process: no HTTP parser, no socket.

The HTTP app of ``service run`` (same wiring: :func:`build_service`, wrapped in the port's body cap as
:class:`lancert.serving.ports.Port` wraps it) is called as ASGI, one request at a time in one event loop
(so anyio's worker thread is reused between calls, as under uvicorn), and only the app's call is timed
(``time.process_time``, all threads: the worker thread that runs the handler counts). Baselines in the
same run: ``GET /healthz`` through the same app (framework, routing, thread hop, response; no work) and
the PKI core's ``load_csr`` + ``issue_for_csr`` for the same CSRs (what issue 21's goal counts twice).
``bench/service_issue.py`` measures the same over HTTP with clients in parallel; this one leaves the
machine's other jobs, the clients and the HTTP parser out, so two trees compare within a few percent.
A tree's own copy of this script measures that tree (it puts ``../src`` first on the path).

    python bench/native_inprocess.py [--certs 300] [--rounds 5] [--gets 300]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ZONE = "iot.lancert.test"
CODE = "bench-code"


class App:
    """Calls an ASGI app as uvicorn would, timing only the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cpu = 0.0

    async def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = [(b"host", b"127.0.0.1:8443"), (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8443)}
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                await asyncio.sleep(3600)
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        started = time.process_time()
        await self.app(scope, receive, send)
        self.cpu += time.process_time() - started
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gets", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "src"))
    from cryptography.hazmat.primitives import serialization

    from lancert.pki import (
        TLS_SERVER,
        CertificateAuthority,
        SubjectNames,
        create_csr,
        generate_private_key,
        load_csr,
    )
    from lancert.service.app import service_too_large
    from lancert.service.config import ServiceConfig
    from lancert.service.registry import Registry
    from lancert.service.server import build_service
    from lancert.serving.ports import BodyLimit
    from lancert.wire.provisioning import MAX_BODY_BYTES

    keys = [generate_private_key() for _ in range(64)]
    csrs = [create_csr(keys[i % 64], SubjectNames()).public_bytes(serialization.Encoding.PEM).decode()
            for i in range(args.certs)]
    ca = CertificateAuthority.create_root("bench").create_intermediate("bench intermediate")
    names = SubjectNames.parse(dns=[f"*.box.{ZONE}"])
    with tempfile.TemporaryDirectory(prefix="native-inprocess-") as tmp:
        service = build_service(ServiceConfig(data_dir=Path(tmp), zone=ZONE))
        Registry(service.database).add("bench-db", CODE)
        app = App(BodyLimit(service.app, MAX_BODY_BYTES, service_too_large))
        bodies = [json.dumps({"db_uuid": "bench-db", "enterprise_code": CODE, "box_id": f"box-{i % 64}",
                              "csr": csr}).encode() for i, csr in enumerate(csrs)]
        per_get: list[float] = []
        per_cert: list[float] = []
        per_core: list[float] = []

        async def measure() -> None:
            for body in bodies[:50]:  # warm up (the first code check is a scrypt)
                status, answer = await app.call("POST", "/api/v1/certificates", body)
                assert status == 200, answer
            for _ in range(args.rounds):
                app.cpu = 0.0
                for _ in range(args.gets):
                    await app.call("GET", "/healthz")
                per_get.append(app.cpu * 1000 / args.gets)
                app.cpu = 0.0
                for body in bodies:
                    status, answer = await app.call("POST", "/api/v1/certificates", body)
                    assert status == 200, answer
                per_cert.append(app.cpu * 1000 / len(bodies))
                started = time.process_time()
                for csr in csrs:
                    ca.issue_for_csr(load_csr(csr), TLS_SERVER, names=names,
                                     validity=datetime.timedelta(days=90))
                per_core.append((time.process_time() - started) * 1000 / len(csrs))

        asyncio.run(measure())
        service.provisioner.close()
        service.database.dispose()

    def show(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ms (rounds {' '.join(f'{x:.3f}' for x in values)})"

    print(f"app CPU per GET /healthz: {show(per_get)}")
    print(f"app CPU per native certificate: {show(per_cert)}")
    print(f"PKI core CPU per certificate (load_csr + issue_for_csr): {show(per_core)}")
    goal = statistics.median(per_get) + 2 * statistics.median(per_core)
    print(f"goal (healthz + 2x core): {goal:.3f} ms; native over healthz: "
          f"{statistics.median(per_cert) - statistics.median(per_get):.3f} ms")


if __name__ == "__main__":
    main()
