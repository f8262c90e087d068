"""Sortable unique event ids (ULID layout: 48-bit ms time + 80 random bits, Crockford base32).

The cloud de-duplicates on the id, so it must be unique across gateways and
restarts; it sorts by creation time so a consumer can order a merged stream.
Within one millisecond the random part is incremented (ULID "monotonic"
mode) so ids from one gateway sort in creation order too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

__all__ = ["UlidGenerator", "new_id", "ulid_time_ms"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
# Two base32 chars at a time: 1024 entries, halves the encoding loop.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int, chars: int) -> str:
    out: list[str] = []
    if chars % 2:
        out.append(_ALPHABET[value & 31])
        value >>= 5
        chars -= 1
    for _ in range(chars // 2):
        out.append(_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(out))


class UlidGenerator:
    """Thread-safe monotonic ULID source; `clock_ms` is injectable for tests."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0
        self._time_part = ""

    def __call__(self) -> str:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                self._last_ms = now
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
                self._time_part = _encode(now, 10)
            else:
                # Same millisecond (or the wall clock stepped back): keep order by incrementing.
                self._last_rand += 1
                if self._last_rand > _RANDOM_MAX:
                    self._last_ms += 1
                    self._last_rand = 0
                    self._time_part = _encode(self._last_ms, 10)
            return self._time_part + _encode(self._last_rand, 16)


def ulid_time_ms(ulid: str) -> int:
    """The millisecond timestamp encoded in a ULID's first 10 characters."""
    value = 0
    for ch in ulid[:10]:
        value = (value << 5) | _DECODE[ch]
    return value


new_id = UlidGenerator()
