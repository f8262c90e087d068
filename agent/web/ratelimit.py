"""The one rate limiter: at most `limit` hits per key (a client address) in a sliding `window_s`.

Used for failed staff logins, the captive portal and the QR redirects. It is
bounded (`max_keys`), and a flood of new addresses must not buy a blocked
one a fresh start: when the table is full, keys whose window has passed go
first, then the least recently seen key that is *not* at its limit; a
blocked key is evicted only when every key in the table is blocked.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["RateLimiter"]

# How far into the table an eviction looks for a key that is not blocked; bounds the work per hit.
_EVICT_SCAN = 64


class RateLimiter:
    def __init__(self, limit: int, window_s: float, *, max_keys: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("rate limiter needs limit >= 1, window_s > 0 and max_keys >= 1")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self.refused = 0  # hits refused because the key was at its limit
        self.evicted = 0  # keys forgotten to keep the table bounded

    def __len__(self) -> int:
        return len(self._hits)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._hits.get(key)
        if q is not None:
            cutoff = now - self.window_s
            while q and q[0] <= cutoff:
                q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        """At the limit now (nothing recorded)."""
        q = self._recent(key, self._clock())
        return q is not None and len(q) >= self.limit

    def record(self, key: str) -> None:
        """Count one hit for `key`."""
        now = self._clock()
        q = self._recent(key, now)
        if q is None:
            self._make_room(now)
            q = self._hits[key] = deque(maxlen=self.limit)
        else:
            self._hits.move_to_end(key)
        q.append(now)

    def allow(self, key: str) -> bool:
        """Check and count: False (and counted as refused) when `key` is at its limit."""
        if self.blocked(key):
            self.refused += 1
            return False
        self.record(key)
        return True

    def forget(self, key: str) -> None:
        self._hits.pop(key, None)

    def _make_room(self, now: float) -> None:
        hits = self._hits
        if len(hits) < self.max_keys:
            return
        cutoff = now - self.window_s
        while hits:  # least recently seen first: expired windows go without a second look
            oldest_key, q = next(iter(hits.items()))
            if q and q[-1] > cutoff:
                break
            del hits[oldest_key]
            self.evicted += 1
        if len(hits) < self.max_keys:
            return
        for i, (key, q) in enumerate(hits.items()):
            if i >= _EVICT_SCAN:
                break
            if len(q) < self.limit:
                del hits[key]
                self.evicted += 1
                return
        hits.popitem(last=False)  # every key looked at is blocked: the oldest goes
        self.evicted += 1
