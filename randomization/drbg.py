"""A fully specified deterministic random generator, so a list can be re-derived anywhere.

HMAC-SHA256 in counter mode keyed by the list's seed: output block i of stream ``label`` is
``HMAC(seed, label || 0x00 || i as 8 bytes big-endian)``. Integers are drawn by rejection
sampling (no modulo bias) and shuffles are Fisher-Yates. Unlike Python's ``random`` module the
algorithm is written down here in full, so an auditor can re-create a list from its recorded
seed and parameters in any language.
"""

from __future__ import annotations

import hashlib
import hmac


class DeterministicStream:
    def __init__(self, seed: bytes, label: str):
        self._key = seed
        self._label = label.encode("utf-8") + b"\x00"
        self._counter = 0
        self._buffer = b""

    def _bytes(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hmac.new(
                self._key, self._label + self._counter.to_bytes(8, "big"), hashlib.sha256
            ).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        if n <= 0:
            raise ValueError("n must be positive")
        if n == 1:
            return 0
        nbytes = (n.bit_length() + 7) // 8
        limit = (256**nbytes // n) * n
        while True:
            value = int.from_bytes(self._bytes(nbytes), "big")
            if value < limit:
                return value % n

    def uniform(self) -> float:
        """A uniform float in [0, 1) with 53 bits of precision."""
        return (int.from_bytes(self._bytes(7), "big") >> 3) / float(1 << 53)

    def choice(self, items):
        return items[self.below(len(items))]

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
