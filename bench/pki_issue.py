"""Certificates issued per second through the PKI core vs a bare cryptography signing loop.

Both loops make the same TLS server leaf (same extensions, same signature hash) from an intermediate
CA whose key is ECDSA P-256 or RSA 2048, for public keys made beforehand, so the difference is what
the core adds: profile checks, key-strength checks, name and validity handling. The bare loop is what
a careful hand-written issuer would do: everything constant (issuer name, AKI, extensions) built once.

Rounds alternate core/bare so that load from other processes hits both alike; each round is timed in
CPU time of this process (time.process_time), and medians over rounds are reported.

    /work/venv/bin/python bench/pki_issue.py [--rounds 7] [--ec-count 400] [--rsa-count 150]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import cryptography
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lancert.pki import TLS_SERVER, CertificateAuthority, SubjectNames, generate_private_key, utcnow
from lancert.pki.issuing import BACKDATE

VALIDITY = timedelta(days=90)
# One box per certificate, as the service sees them: names differ, so nothing name-related is reusable.
NAMES = [SubjectNames.parse(dns=[f"*.box{i:04d}.iot.example.net"]) for i in range(32)]


def core_loop(ca: CertificateAuthority, public_keys: list, count: int) -> list[x509.Certificate]:
    n = len(public_keys)
    return [
        ca.issue(public_keys[i % n], TLS_SERVER, names=NAMES[i % n], validity=VALIDITY) for i in range(count)
    ]


def bare_loop(ca: CertificateAuthority, public_keys: list, count: int) -> list[x509.Certificate]:
    issuer = ca.certificate.subject
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    bc = x509.BasicConstraints(ca=False, path_length=None)
    ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    sha256 = hashes.SHA256()
    n = len(public_keys)
    out = []
    for i in range(count):
        public_key, names = public_keys[i % n], NAMES[i % n]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names.dns[0])])
        san = x509.SubjectAlternativeName([x509.DNSName(d) for d in names.dns])
        start = utcnow() - BACKDATE
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + VALIDITY)
            .add_extension(bc, critical=True)
            .add_extension(ku, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(eku, critical=False)
            .add_extension(san, critical=False)
            .sign(ca.key, sha256)
        )
        out.append(cert)
    return out


def rate(loop: Callable[..., list], ca: CertificateAuthority, public_keys: list, count: int) -> float:
    # CPU time of this process: the machine is shared, and wall-clock time would measure the neighbours.
    t0 = time.process_time()
    certs = loop(ca, public_keys, count)
    elapsed = time.process_time() - t0
    assert len(certs) == count
    return count / elapsed


def same_shape(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Both loops must make the same certificate, or the comparison means nothing."""

    def shape(c: x509.Certificate) -> tuple:
        extensions = [(e.oid, e.critical, e.value) for e in c.extensions]
        return extensions, c.subject, c.issuer, c.signature_algorithm_oid, c.public_key()

    return shape(a) == shape(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ec-count", type=int, default=400, help="certificates per round, P-256 issuer")
    parser.add_argument("--rsa-count", type=int, default=150, help="certificates per round, RSA 2048 issuer")
    args = parser.parse_args()

    public_keys = [generate_private_key().public_key() for _ in range(len(NAMES))]
    root = CertificateAuthority.create_root("Bench Root")
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}, rounds {args.rounds}"
    )
    print(f"{'issuer key':<12} {'core cert/s':>12} {'bare cert/s':>12} {'core overhead':>14}")
    worst = 0.0
    for label, kind, count in (("ECDSA P-256", "ec", args.ec_count), ("RSA 2048", "rsa", args.rsa_count)):
        ca = root.create_intermediate(f"Bench {label}", key=generate_private_key(kind))
        core_cert, bare_cert = core_loop(ca, public_keys, 1)[0], bare_loop(ca, public_keys, 1)[0]
        if not same_shape(core_cert, bare_cert):
            print(f"loops make different certificates for {label}", file=sys.stderr)
            return 1
        core_loop(ca, public_keys, count // 4)  # warm-up
        bare_loop(ca, public_keys, count // 4)
        core_rates, bare_rates, ratios = [], [], []
        for _ in range(args.rounds):
            c = rate(core_loop, ca, public_keys, count)
            b = rate(bare_loop, ca, public_keys, count)
            core_rates.append(c)
            bare_rates.append(b)
            ratios.append(b / c - 1)  # extra time per certificate, relative to the bare loop
        core_med, bare_med = statistics.median(core_rates), statistics.median(bare_rates)
        overhead = statistics.median(ratios)
        worst = max(worst, overhead)
        print(f"{label:<12} {core_med:>12.0f} {bare_med:>12.0f} {overhead:>13.1%}")
    print(f"target: core overhead < 10%: {'met' if worst < 0.10 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
