"""The payment-terminal side of paired mutual TLS (the PAX "Acceptance Devices" model).

The terminal is its own CA. Its owner taps Generate Code; a POS posts ``{"posId", "setupCode"}`` to
``https://<terminal>:<port>/`` (or sends it over ``wss://``) and receives a PKCS#1 RSA key and its client,
intermediate and root certificates; from then on the POS calls the API with that certificate.

- :mod:`~lancert.terminal.codes`: the setup code (alphabet, lifetime, attempts, clock).
- :mod:`~lancert.terminal.device`: the terminal's CA, server certificate and pairing decision.
- :mod:`~lancert.terminal.registry`: which certificate each posId holds now (``pos.json``).
- :mod:`~lancert.terminal.app`: the HTTPS/WSS port; :mod:`~lancert.terminal.screen`: the loopback screen.
"""

from lancert.terminal.codes import SetupCodes
from lancert.terminal.device import PairingDesk, TerminalState
from lancert.terminal.registry import PosRegistry

__all__ = ["PairingDesk", "PosRegistry", "SetupCodes", "TerminalState"]
