"""Pre-generated RSA keys, so a pairing answers in milliseconds instead of the time of an RSA keygen.

Generating a 2048-bit RSA key takes tens to hundreds of milliseconds and varies a lot (prime search); a
small bounded pool, refilled by one background thread, takes that off the pairing path. Keys in the pool
live only in memory and each is handed out once.
"""

from __future__ import annotations

import queue
import threading

from cryptography.hazmat.primitives.asymmetric import rsa

from lancert.pki import KeyKind, generate_private_key

RSA_BITS = 2048


class RsaKeyPool:
    """Up to ``size`` ready RSA keys; ``size`` 0 makes every :meth:`take` generate on the spot."""

    def __init__(self, size: int = 4, bits: int = RSA_BITS) -> None:
        self.size = size
        self.bits = bits
        self._keys: queue.Queue[rsa.RSAPrivateKey] = queue.Queue(maxsize=max(size, 1))
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.size > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="rsa-key-pool", daemon=True)
            self._thread.start()
            self._wanted.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wanted.set()

    def available(self) -> int:
        return self._keys.qsize()

    def take(self) -> rsa.RSAPrivateKey:
        """A key never handed out before: from the pool when one is ready, else made now."""
        if self.size > 0:
            try:
                key = self._keys.get_nowait()
            except queue.Empty:
                key = None
            self._wanted.set()
            if key is not None:
                return key
        return self._generate()

    def _generate(self) -> rsa.RSAPrivateKey:
        key = generate_private_key(KeyKind.RSA, rsa_bits=self.bits)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def _fill(self) -> None:
        while not self._stopped.is_set():
            self._wanted.wait()
            self._wanted.clear()
            while not self._stopped.is_set() and self._keys.qsize() < self.size:
                self._keys.put(self._generate())
