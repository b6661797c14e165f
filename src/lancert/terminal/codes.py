"""The setup code a terminal shows on "Generate Code": eight characters, 300 seconds, one use.

The rules bound what a guesser on the shop's network can do, and let nobody but the one at the
terminal's screen stop a POS from pairing:

- nothing a LAN client does replaces the code: only its 300 s or "Generate Code" on the screen do (the
  code belongs to the screen's session). Before, 5 wrong codes from two addresses burnt it and put the
  terminal in a 30 s cooldown, so two guessing addresses (4 + 1 wrong codes) burnt every new code within
  a fraction of a second: 0 of 3 POS pairings succeeded;
- wrong codes are counted per source address (an IPv4 address, an IPv6 address: not its /64, which is
  the whole shop LAN, POS included); an address gets :data:`MAX_WRONG_PER_SOURCE` (4) checked wrong codes
  per code, then its attempts are refused unchecked until the code changes;
- the budget cannot be sprayed over addresses: once :data:`MAX_WRONG_ATTEMPTS` (5) wrong codes were
  checked on a code, an address that guessed wrong on it is refused unchecked, and an address that has
  not gets exactly one check, so a POS that types the right code is always checked, and an attacker's
  guesses beyond 5 per code cost one new address each (the README works out the odds).

Wrong, expired, used and blocked attempts all look the same to the caller: :meth:`SetupCodes.consume`
is False.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# No 0/O and no 1/I/L: what a cashier types from a screen must not be ambiguous (31 symbols).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_LIFETIME = 300.0
# Checked wrong codes per code after which each address gets only its first check.
MAX_WRONG_ATTEMPTS = 5
MAX_WRONG_PER_SOURCE = 4
# What consume() counts attempts against when the caller has no address (the device's own screen, tests).
LOCAL_SOURCE = "local"

# The clock that decides expiry. Only a caller in the same process can replace it (tests
# pass their own, or run the terminal through tests/lancert_with_hooks.py): nothing in the environment
# of a running terminal can move it, so nobody who can set a process's variables extends a code's life.
Clock = Callable[[], float]


def source_key(address: str) -> str:
    """The unit wrong codes are counted by: the address itself, IPv4 or IPv6 (an IPv4-mapped IPv6
    address counts as the IPv4 one; a zone index is dropped). Not an IPv6 /64, as the connection caps
    count (:func:`lancert.serving.connections.client_key`): a shop LAN is one /64, so a guesser anywhere in it
    would block the POS beside it; spreading guesses over addresses is bounded by the code's total
    instead (see the module's docstring)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(value: str) -> str:
    """What a POS sends, as it would be compared: spaces and dashes dropped, upper case."""
    return value.replace(" ", "").replace("-", "").upper()


@dataclass(frozen=True)
class CodeView:
    """What the screen shows: the code, its countdown, and who is guessing."""

    code: str
    seconds_left: int
    # Addresses refused until the next code for too many wrong codes (someone is guessing), and the
    # number of wrong attempts checked against the current code.
    blocked_sources: tuple[str, ...] = ()
    wrong_attempts: int = 0


class SetupCodes:
    """The one current setup code of a terminal; thread-safe, driven by an injectable clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._code: str | None = None
        self._expires = 0.0
        self._wrong = 0
        self._wrong_by_source: dict[str, int] = {}

    def generate(self) -> CodeView:
        """"Generate Code" on the device: a fresh code, every address's attempts reset (owner present)."""
        with self._lock:
            now = self._clock()
            self._issue(now)
            return self._view(now)  # type: ignore[return-value]

    def current(self) -> CodeView | None:
        """The code on screen now (rotated if its 300 s ran out), or None when none is shown."""
        with self._lock:
            now = self._clock()
            self._rotate(now)
            return self._view(now)

    def consume(self, candidate: str, source: str = LOCAL_SOURCE) -> bool:
        """True exactly once for the current code; False for anything else, counting wrong attempts
        per code and per ``source`` (the client's address, as :func:`source_key` counts it)."""
        key = source_key(source)
        with self._lock:
            now = self._clock()
            self._rotate(now)
            if self._code is None or self._refused_unchecked(key):
                return False
            if hmac.compare_digest(normalize_code(candidate).encode(), self._code.encode()):
                self._code = None  # the counts are read only while a code is shown, and reset with it
                self._wrong_by_source = {}  # but blocked() answers at once: nobody is blocked any more
                return True
            self._wrong += 1
            self._wrong_by_source[key] = self._wrong_by_source.get(key, 0) + 1
            return False

    def blocked(self, source: str) -> bool:
        """Whether ``source`` is refused unchecked on the current code (it guessed wrong too often)."""
        with self._lock:
            self._rotate(self._clock())
            return self._refused_unchecked(source_key(source))

    def _refused_unchecked(self, key: str) -> bool:
        wrong = self._wrong_by_source.get(key, 0)
        return wrong >= MAX_WRONG_PER_SOURCE or (self._wrong >= MAX_WRONG_ATTEMPTS and wrong > 0)

    def _issue(self, now: float) -> None:
        self._code = new_code()
        self._expires = now + CODE_LIFETIME
        self._wrong = 0
        self._wrong_by_source = {}

    def _rotate(self, now: float) -> None:
        if self._code is not None and now >= self._expires:
            # The screen keeps showing a code: an expired one is replaced, as the device refreshes it.
            elapsed = now - self._expires
            self._issue(now - elapsed % CODE_LIFETIME)

    def _view(self, now: float) -> CodeView | None:
        if self._code is None:
            return None
        blocked = tuple(sorted(k for k in self._wrong_by_source if self._refused_unchecked(k)))
        return CodeView(self._code, _whole_seconds(self._expires - now), blocked, self._wrong)


def _whole_seconds(remaining: float) -> int:
    """Seconds left as a countdown shows them: rounded up, but not past float noise.

    ``(now + 300.0) - now`` is 300.00000000000006 for some ``now``; a plain ceil would then show 301.
    """
    return max(0, math.ceil(round(remaining, 6)))
