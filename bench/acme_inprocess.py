"""CPU of the ACME server's app per request and per certificate, in-process: no TLS, no HTTP parser.

The app of ``service run --acme-port`` (same wiring: :func:`build_service`, :func:`build_acme_server`,
:func:`create_acme_app`) is called as ASGI, one request at a time, and only the app's call is timed
(``time.process_time``, all threads: the worker thread of a signed request counts), so the client's JWS
signing and the machine's other jobs stay out of the figure. Per certificate: new-order, the
authorization (POST-as-GET), finalize, the order, the certificate: the 5 signed requests of an
issuance after the account exists. Baseline in the same run: ``GET /acme/directory`` (framework, routing
and response, no protocol work). Prints medians over rounds.

    python bench/acme_inprocess.py [--certs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ZONE = "iot.lancert.test"
HOST = f"acme.{ZONE}"


class App:
    """Calls an ASGI app as uvicorn would, timing only the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cpu = 0.0

    def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        headers = [(b"host", HOST.encode()), (b"content-type", b"application/jose+json"),
                   (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 443)}
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
        self.loop.run_until_complete(self.app(scope, receive, send))
        self.cpu += time.process_time() - started
        start = sent[0]
        response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], response_headers, b"".join(m.get("body", b"") for m in sent[1:])

    loop = asyncio.new_event_loop()


class Client:
    def __init__(self, app: App) -> None:
        import josepy as jose
        from cryptography.hazmat.primitives.asymmetric import ec

        self.app, self.jose = app, jose
        self.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        _, headers, body = app.call("GET", "/acme/directory")
        self.directory = json.loads(body)
        self.nonce = headers["replay-nonce"]
        self.kid: str | None = None

    def post(self, url: str, payload: Any = None, jwk: bool = False) -> tuple[int, dict[str, str], Any]:
        from acme import jws as acme_jws

        raw = b"" if payload is None else json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(raw, key=self.key, alg=self.jose.ES256,
                                   nonce=self.jose.b64decode(self.nonce), url=url,
                                   kid=None if jwk else self.kid)
        path = url.split(HOST, 1)[1]
        status, headers, body = self.app.call("POST", path, json.dumps(signed.to_partial_json()).encode())
        self.nonce = headers["replay-nonce"]
        ctype = headers.get("content-type", "")
        return status, headers, json.loads(body) if "json" in ctype and body else body

    def account(self, eab: Any) -> None:
        from acme import messages

        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=self.key.public_key(), kid=eab.kid, hmac_key=eab.hmac_key,
            directory=messages.Directory.from_json(self.directory))
        status, headers, body = self.post(self.directory["newAccount"], {
            "termsOfServiceAgreed": True, "externalAccountBinding": binding.to_partial_json()
            if hasattr(binding, "to_partial_json") else binding}, jwk=True)
        assert status == 201, body
        self.kid = headers["location"]

    def issue(self, name: str, csr_b64: str) -> None:
        status, headers, order = self.post(self.directory["newOrder"],
                                           {"identifiers": [{"type": "dns", "value": name}]})
        assert status == 201, order
        url = headers["location"]
        status, _, authz = self.post(order["authorizations"][0])
        assert status == 200 and authz["status"] == "valid", authz
        status, _, done = self.post(order["finalize"], {"csr": csr_b64})
        assert status == 200 and done["status"] == "valid", done
        status, _, done = self.post(url)
        assert done["status"] == "valid"
        status, _, chain = self.post(done["certificate"])
        assert status == 200 and b"BEGIN CERTIFICATE" in chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gets", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "src"))
    import josepy as jose
    from cryptography.hazmat.primitives import serialization

    from lancert.pki import SubjectNames, create_csr, generate_private_key
    from lancert.service.acmeserver.app import create_acme_app
    from lancert.service.acmeserver.build import build_acme_server
    from lancert.service.acmeserver.eab import EabKeys
    from lancert.service.config import ServiceConfig
    from lancert.service.registry import Registry
    from lancert.service.server import build_service

    with tempfile.TemporaryDirectory(prefix="acme-inprocess-") as tmp:
        service = build_service(ServiceConfig(data_dir=Path(tmp), zone=ZONE))
        Registry(service.database).add("bench-db", "bench-code")
        eab = EabKeys(service.database).create("bench-db")
        label = service.authority.box_label("bench-db", None)
        acme = build_acme_server(service.database, service.authority, service.provisioner)
        app = App(create_acme_app(acme))
        client = Client(app)
        client.account(eab)
        csrs = []
        for i in range(args.certs * args.rounds):
            name = f"h{i}.{label}.{ZONE}"
            der = create_csr(generate_private_key(), SubjectNames.parse(dns=[name])).public_bytes(
                serialization.Encoding.DER)
            csrs.append((name, jose.b64encode(der).decode()))
        for _ in range(20):  # warm up
            app.call("GET", "/acme/directory")
        per_get, per_cert = [], []
        for r in range(args.rounds):
            app.cpu = 0.0
            for _ in range(args.gets):
                app.call("GET", "/acme/directory")
            per_get.append(app.cpu * 1000 / args.gets)
            app.cpu = 0.0
            for name, csr in csrs[r * args.certs:(r + 1) * args.certs]:
                client.issue(name, csr)
            per_cert.append(app.cpu * 1000 / args.certs)
        service.provisioner.close()
        service.database.dispose()
    print(f"app CPU per GET /acme/directory: {statistics.median(per_get):.3f} ms "
          f"(rounds {' '.join(f'{x:.3f}' for x in per_get)})")
    print(f"app CPU per certificate (5 signed requests): {statistics.median(per_cert):.2f} ms "
          f"(rounds {' '.join(f'{x:.2f}' for x in per_cert)})")


if __name__ == "__main__":
    main()
