"""The setup code a terminal shows on "Generate Code": eight characters, 300 seconds, one use.

The rules bound what a guesser on the shop's network can do: a code dies after 5 wrong attempts and a
new one takes its place, and for :data:`BURN_COOLDOWN` seconds after that every attempt is refused
unchecked, so at most 5 guesses are checked per code and per 30 s (the README works out the odds).

One source address alone cannot burn the code: after :data:`MAX_WRONG_PER_SOURCE` (4) wrong attempts on
the current code, that address's attempts are refused unchecked until the code changes, while others'
are still checked. A guessing PC or a misbehaving scanner therefore burns only its own attempts and the
cashier's POS still pairs (it was 0 of 8 pairings with one guess per second, before); only wrong codes
from two or more addresses burn the code, as every wrong code did before. Wrong, expired, used,
cooling-down and blocked attempts all look the same to the caller: :meth:`SetupCodes.consume` is False.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lancert.serving.connections import client_key

# No 0/O and no 1/I/L: what a cashier types from a screen must not be ambiguous (31 symbols).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_LIFETIME = 300.0
MAX_WRONG_ATTEMPTS = 5
# Below MAX_WRONG_ATTEMPTS, so that one address can never burn the code for everyone.
MAX_WRONG_PER_SOURCE = 4
BURN_COOLDOWN = 30.0
# What consume() counts attempts against when the caller has no address (the device's own screen, tests).
LOCAL_SOURCE = "local"

# The clock that decides expiry and cooldowns. Only a caller in the same process can replace it (tests
# pass their own, or run the terminal through tests/lancert_with_hooks.py): nothing in the environment
# of a running terminal can move it, so nobody who can set a process's variables extends a code's life.
Clock = Callable[[], float]


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(value: str) -> str:
    """What a POS sends, as it would be compared: spaces and dashes dropped, upper case."""
    return value.replace(" ", "").replace("-", "").upper()


@dataclass(frozen=True)
class CodeView:
    """What the screen shows: the code, its countdown, the wait after a burn, and who is guessing."""

    code: str
    seconds_left: int
    cooldown_seconds: int
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
        self._cooldown_until = 0.0

    def generate(self) -> CodeView:
        """"Generate Code" on the device: a fresh code, attempts and any cooldown reset (owner present)."""
        with self._lock:
            now = self._clock()
            self._issue(now)
            self._cooldown_until = 0.0
            return self._view(now)  # type: ignore[return-value]

    def current(self) -> CodeView | None:
        """The code on screen now (rotated if its 300 s ran out), or None when none is shown."""
        with self._lock:
            now = self._clock()
            self._rotate(now)
            return self._view(now)

    def consume(self, candidate: str, source: str = LOCAL_SOURCE) -> bool:
        """True exactly once for the current code; False for anything else, counting wrong attempts
        per code and per ``source`` (the client's address, grouped by :func:`client_key`)."""
        key = client_key(source)
        with self._lock:
            now = self._clock()
            if now < self._cooldown_until:
                return False
            self._rotate(now)
            if self._code is None:
                return False
            if self._wrong_by_source.get(key, 0) >= MAX_WRONG_PER_SOURCE:
                return False  # this address has had its guesses on this code; others still pair
            if hmac.compare_digest(normalize_code(candidate).encode(), self._code.encode()):
                self._code = None  # the counts are read only while a code is shown, and reset with it
                self._wrong_by_source = {}  # but blocked() answers at once: nobody is blocked any more
                return True
            self._wrong += 1
            self._wrong_by_source[key] = self._wrong_by_source.get(key, 0) + 1
            if self._wrong >= MAX_WRONG_ATTEMPTS:
                self._issue(now)
                self._cooldown_until = now + BURN_COOLDOWN
            return False

    def blocked(self, source: str) -> bool:
        """Whether ``source`` is refused unchecked on the current code (it guessed wrong too often)."""
        with self._lock:
            return self._wrong_by_source.get(client_key(source), 0) >= MAX_WRONG_PER_SOURCE

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
        blocked = tuple(sorted(k for k, n in self._wrong_by_source.items() if n >= MAX_WRONG_PER_SOURCE))
        return CodeView(
            self._code, _whole_seconds(self._expires - now), _whole_seconds(self._cooldown_until - now),
            blocked, self._wrong,
        )


def _whole_seconds(remaining: float) -> int:
    """Seconds left as a countdown shows them: rounded up, but not past float noise.

    ``(now + 300.0) - now`` is 300.00000000000006 for some ``now``; a plain ceil would then show 301.
    """
    return max(0, math.ceil(round(remaining, 6)))
