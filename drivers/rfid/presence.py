"""Tag-read smoothing: from many raw reads a second to one appearance and one departure per zone.

A UHF reader reports the same tag many times a second, and misses it now
and then. A tag *appears* in a zone on its first read and is *gone* once it
has not been read there for `gone_after_s`. Pure: the caller passes the
monotonic time, so the timing is tested without sleeping.

The work per read and per wake-up does not grow with the tags in view: the
tags are kept in the order of their last read (a read moves its tag to the
end), so the first one is always the next to go and `expire` looks only at
the tags it removes. This needs the time passed in never to go back, which a
monotonic clock guarantees; a read with an older time is taken as "now".
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["TagPresence", "ZonePresence"]


@dataclass(slots=True)
class TagPresence:
    epc: str
    zone: str
    antenna: int
    first_seen: float
    last_seen: float
    rssi: int | None
    reads: int = 1


class ZonePresence:
    """Which tags are in which zone, from raw reads."""

    def __init__(self, gone_after_s: float) -> None:
        if gone_after_s <= 0:
            raise ValueError("gone_after_s must be positive")
        self.gone_after_s = gone_after_s
        self._tags: OrderedDict[tuple[str, str], TagPresence] = OrderedDict()  # oldest last read first
        self._latest = float("-inf")

    def observe(self, epc: str, zone: str, antenna: int, rssi: int | None, now: float) -> TagPresence | None:
        """Record a read; returns the new presence if the tag just appeared in this zone."""
        now = self._latest = max(now, self._latest)
        key = (zone, epc)
        tag = self._tags.get(key)
        if tag is not None:
            tag.last_seen = now
            tag.reads += 1
            if rssi is not None:
                tag.rssi = rssi
                tag.antenna = antenna
            self._tags.move_to_end(key)
            return None
        tag = TagPresence(epc, zone, antenna, now, now, rssi)
        self._tags[key] = tag
        return tag

    def expire(self, now: float) -> list[TagPresence]:
        """Remove and return the tags not read for `gone_after_s` (the oldest first)."""
        deadline = now - self.gone_after_s
        tags = self._tags
        gone = []
        while tags:
            key, tag = next(iter(tags.items()))
            if tag.last_seen > deadline:
                break
            del tags[key]
            gone.append(tag)
        return gone

    def clear(self) -> list[TagPresence]:
        """Forget every tag (the reader went away); returns them so the caller can report them gone."""
        gone = list(self._tags.values())
        self._tags.clear()
        return gone

    def in_view(self) -> list[TagPresence]:
        """The tags present now (a rule that starts late seeds itself from them: no tag.seen repeats them)."""
        return list(self._tags.values())

    def next_deadline(self) -> float | None:
        if not self._tags:
            return None
        return next(iter(self._tags.values())).last_seen + self.gone_after_s

    def __len__(self) -> int:
        return len(self._tags)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._tags
