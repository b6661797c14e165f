"""ACME load generator: N complete issuances (account per client thread, then order -> authorization
-> challenge if needed -> finalize -> poll -> download), C at a time, against any RFC 8555 server.
Prints one line: certificates, wall time, certificates/s, p50/p95 latency per issuance.

Based on the project's shared generator (/work/shared/bench/acme_load.py): certbot's ``acme`` library
as the client, but polling every 5 ms (the library's own 1 s poll would measure its sleeps).

    python bench/acme_load.py --directory URL [--ca-bundle F] [--n 200] [--concurrency 4]
        [--domain-template 'h{i}.example.test'] [--eab-kid K --eab-hmac B64URL] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import josepy as jose
from acme import challenges, client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

POLL = 0.005


def csr_pem(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def make_client(args: argparse.Namespace) -> client.ClientV2:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, verify_ssl=True, user_agent="lancert-acme-load")
    directory = client.ClientV2.get_directory(args.directory, net)
    acme = client.ClientV2(directory, net)
    eab = None
    if args.eab_kid:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=args.eab_kid, hmac_key=args.eab_hmac,
            directory=directory)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True,
                                                        external_account_binding=eab))
    return acme


def _poll(acme: client.ClientV2, uri: str, cls: type, done: object) -> object:
    while True:
        body = cls.from_json(acme._post_as_get(uri).json())  # type: ignore[attr-defined]
        if done(body):  # type: ignore[operator]
            return body
        time.sleep(POLL)


def issue(acme: client.ClientV2, name: str) -> float:
    started = time.perf_counter()
    pem = csr_pem(name)
    order = acme.new_order(pem)
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        acme.answer_challenge(chall, chall.response(acme.net.key))
        _poll(acme, authz.uri, messages.Authorization,
              lambda a: a.status in (messages.STATUS_VALID, messages.STATUS_INVALID))
    acme._post(order.body.finalize, messages.CertificateRequest(csr=x509.load_pem_x509_csr(pem)))
    body = _poll(acme, order.uri, messages.Order,
                 lambda o: o.status in (messages.STATUS_VALID, messages.STATUS_INVALID))
    assert body.status == messages.STATUS_VALID, body  # type: ignore[attr-defined]
    assert "BEGIN CERTIFICATE" in acme._post_as_get(body.certificate).text  # type: ignore[attr-defined]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--directory", required=True)
    parser.add_argument("--ca-bundle")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--domain-template", default="h{i}.example.test")
    parser.add_argument("--eab-kid")
    parser.add_argument("--eab-hmac")
    parser.add_argument("--max-seconds", type=float, default=60)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.ca_bundle:
        os.environ["REQUESTS_CA_BUNDLE"] = args.ca_bundle
    local = threading.local()
    stop_at = time.perf_counter() + args.max_seconds

    def one(i: int) -> float | None:
        if time.perf_counter() > stop_at:
            return None
        if not hasattr(local, "acme"):
            local.acme = make_client(args)
        return issue(local.acme, args.domain_template.format(i=i))

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        latencies = [x for x in pool.map(one, range(args.n)) if x is not None]
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20)
    print(f"certs={len(latencies)} concurrency={args.concurrency} wall={wall:.2f}s "
          f"rate={len(latencies) / wall:.1f}/s p50={statistics.median(latencies) * 1000:.1f}ms "
          f"p95={q[18] * 1000:.1f}ms", flush=True)


if __name__ == "__main__":
    main()
