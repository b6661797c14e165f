"""``lancert scan``: every TLS service of a shop's network, its certificate, trust, and expiry.

A shop has several devices whose certificates expire years apart; this finds them all and says, per
service, what it is (an ePOS printer, an IoT box, a pairing terminal), what its certificate says, and
whether this machine trusts it — judged exactly as ``lancert check`` judges (:func:`lancert.check.evaluate`
against the system store and each NSS database of the user's browsers). Exit status for monitoring:
0 all fine, 1 something expires within ``--warn-days``, 2 something is untrusted or expired.

- :mod:`lancert.scan.targets`: the addresses and ports to try, and the size limit (a /16 at most);
- :mod:`lancert.scan.probe`: one address and port: the served chain, and what device answers there;
- :mod:`lancert.scan.scanner`: bounded concurrency, the trust verdicts and the exit status.
"""

from lancert.scan.scanner import EXIT_EXPIRING, EXIT_OK, EXIT_UNTRUSTED, ScanResult, Service, run_scan
from lancert.scan.targets import DEFAULT_PORTS, ScanTooLarge, parse_ports, scan_targets

__all__ = [
    "DEFAULT_PORTS", "EXIT_EXPIRING", "EXIT_OK", "EXIT_UNTRUSTED", "ScanResult", "ScanTooLarge", "Service",
    "parse_ports", "run_scan", "scan_targets",
]
