"""The scan: probe every address and port with bounded concurrency, then judge each service found."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from lancert.check.verdict import TrustSource, evaluate
from lancert.errors import LancertError
from lancert.pki import is_self_issued, summarize, utcnow
from lancert.scan.probe import Found, browser_name, probe
from lancert.trust.nss import nss_databases

EXIT_OK, EXIT_EXPIRING, EXIT_UNTRUSTED = 0, 1, 2
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 2.0


def default_trust_sources(home: Path) -> list[TrustSource]:
    """What ``check`` would use on this machine: the system store, and each NSS database of the user."""
    sources = []
    try:
        sources.append(TrustSource.system())
    except LancertError:
        pass
    for store in nss_databases(home):
        if store.exists():
            sources.append(TrustSource.from_nssdb(store.directory))
    return sources


@dataclass
class Service:
    """One TLS service found, with its certificate, who trusts it and its verdict."""

    address: str
    port: int
    kind: str
    host: str = ""
    certificate: dict[str, object] = field(default_factory=dict)
    trust: list[dict[str, object]] = field(default_factory=list)
    tls: bool = True
    error: str = ""
    status: str = "ok"  # ok | expiring | untrusted | expired | no-tls | no-answer

    @property
    def trusted_by(self) -> list[str]:
        return [str(t["source"]) for t in self.trust if t["secure"]]

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "port": self.port, "kind": self.kind, "tls": self.tls,
                "host": self.host, "status": self.status, "error": self.error,
                "certificate": self.certificate, "trusted": bool(self.trusted_by), "trust": self.trust}


@dataclass
class ScanResult:
    network: str
    ports: tuple[int, ...]
    warn_days: int
    services: list[Service]

    @property
    def exit_status(self) -> int:
        statuses = {s.status for s in self.services}
        if statuses & {"untrusted", "expired"}:
            return EXIT_UNTRUSTED
        if "expiring" in statuses:
            return EXIT_EXPIRING
        return EXIT_OK

    def as_dict(self) -> dict[str, object]:
        return {"network": self.network, "ports": list(self.ports), "warn_days": self.warn_days,
                "exit_status": self.exit_status, "services": [s.as_dict() for s in self.services]}


def judge(found: Found, sources: Sequence[TrustSource], warn_days: int) -> Service:
    """The verdict on one service: each trust source as ``check`` sees it, then expiry.

    Without a chain: a certificate that cannot be parsed is ``untrusted`` (no browser can judge it
    either), a handshake never finished is ``no-answer``, anything else that is not TLS ``no-tls``."""
    kind = found.kind
    if not found.chain:
        status = "untrusted" if found.tls else "no-answer" if found.stalled else "no-tls"
        return Service(found.address, found.port, kind, tls=found.tls, error=found.error, status=status)
    leaf = found.chain[0]
    host = browser_name(found.address, leaf)
    summary = summarize(leaf).as_dict()
    summary["self_signed"] = is_self_issued(leaf)
    trust = []
    for source in sources:
        reasons = evaluate(list(found.chain), host, source)
        trust.append({"source": source.description, "secure": not reasons,
                      "reasons": [r.code for r in reasons]})
    service = Service(found.address, found.port, kind, host, summary, trust, error=found.error)
    now = utcnow()
    if now > leaf.not_valid_after_utc:
        service.status = "expired"
    elif not service.trusted_by:
        service.status = "untrusted"
    elif leaf.not_valid_after_utc - now < timedelta(days=warn_days):
        service.status = "expiring"
    return service


def run_scan(
    addresses: Sequence[str], ports: Sequence[int], *, sources: Sequence[TrustSource], warn_days: int,
    network: str = "", timeout: float = DEFAULT_TIMEOUT, concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> ScanResult:
    """Probe ``addresses`` × ``ports`` with at most ``concurrency`` connections open at once."""
    pairs = [(a, p) for a in addresses for p in ports]
    found: list[Found] = []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(pairs) or 1))) as pool:
        for done, result in enumerate(pool.map(lambda ap: probe(ap[0], ap[1], timeout), pairs), 1):
            if result is not None:
                found.append(result)
            progress(done, len(pairs))
        services = list(pool.map(lambda f: judge(f, sources, warn_days), found))
    return ScanResult(network, tuple(ports), warn_days, services)
