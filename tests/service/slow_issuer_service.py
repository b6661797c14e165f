"""Test-only entry point: ``lancert service run`` whose issuer takes ``--slow-issuance SECONDS`` longer
for every certificate (the real issuer, wrapped), to test the order desk's deadlines.

    python tests/service/slow_issuer_service.py --slow-issuance 6 [service run options...]

The hook is injected here, through ``run_service(config, wrap_issuer=...)``; shipped code reads no
environment variable for it.
"""

from __future__ import annotations

import sys
import time

from cryptography import x509

import lancert.service.server as server
from lancert.commands.main import main
from lancert.pki import SubjectNames
from lancert.service.issuer import IssuedChain, Issuer


class SlowIssuer:
    """The real issuer, ``delay`` seconds slower; it places orders, so native requests queue too."""

    places_orders = True

    def __init__(self, issuer: Issuer, delay: float) -> None:
        self.issuer = issuer
        self.delay = delay
        self.name = issuer.name
        self.description = issuer.description
        self.needs_csr_names = issuer.needs_csr_names

    def root_certificates(self) -> list[x509.Certificate]:
        return self.issuer.root_certificates()

    def issue_server_certificate(
        self, csr: x509.CertificateSigningRequest, names: SubjectNames
    ) -> IssuedChain:
        time.sleep(self.delay)
        return self.issuer.issue_server_certificate(csr, names)


def run() -> None:
    args = sys.argv[1:]
    at = args.index("--slow-issuance")
    delay = float(args[at + 1])
    del args[at : at + 2]
    real = server.run_service

    def slowed(config: object, wrap_issuer: object = None, **options: object) -> None:
        # Every other argument ``service run`` passes (log level, and whatever comes next) goes through.
        real(config, wrap_issuer=lambda issuer: SlowIssuer(issuer, delay), **options)  # type: ignore[arg-type]

    server.run_service = slowed  # type: ignore[assignment]
    sys.argv = ["lancert", "service", "run", *args]
    main()


if __name__ == "__main__":
    run()
