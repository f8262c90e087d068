"""Stock counts from RFID: which tagged items are present, where, and how many per GTIN and zone. Pure.

Inventory rounds
    The presence layer (drivers/rfid/presence.py) reports a tag gone from a
    zone after `gone_after_s` without a read. That is right for a gate or a
    checkout, and too eager for a shelf: a reader cycling through a few
    hundred tags misses some of them for a pass or two, and a stock count
    must not dip every time it does. So stock keeps its own view:

    * one inventory round of a reader is `gone_after_s` seconds of that
      reader being online (from `reader.online` to `reader.offline`; the
      clock of a reader never heard of starts with its first tag event);
    * a tag is present until the reader that saw it last has completed
      `missing_rounds` rounds without reading it. Its `tag.gone` (reason
      "timeout") comes one round after the last read, so that round is
      already counted then; a `tag.seen` anywhere ends the absence;
    * a reader that is offline, silent or paused completes no round: what
      it last saw stays counted. A loose cable does not empty a shelf, and
      when the reader returns the tags it still sees are simply seen again.

    Online time is the round clock, not the raw read counter, because the
    hub carries no raw reads (`tag.read` only with `keep_raw_reads`) and a
    reader that is online runs its inventories whether or not they find
    anything. Choose `gone_after_s` at least as long as one inventory pass
    of the slowest reader; `missing_rounds` is then how many passes in a row
    may miss a tag.

Where an item is
    seen in a zone                      there (while several zones see it, the latest arrival wins: it moved)
    gone, another zone still sees it    in that zone (a cross-read ended)
    gone everywhere                     where it was last seen, missing, until its rounds are up
    Only the zones of `[stock] zones` count; events of other zones are
    ignored. Tags without a GTIN (not SGTIN) are ignored and counted.

What is counted
    Items present and not sold: the sold ledger is read per tag when it
    first shows up and again when sales happen (`refresh_sold`). Sold items
    are still tracked: a sold item back on the floor is "misplaced".

Bounds
    At most `max_epcs` tags are tracked; tags beyond are not (each refusal
    is counted in `dropped`), so a flood of stray tags cannot exhaust memory.

Time is injected (`clock`), as in the presence layer: tests move it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Misplaced", "Replenish", "StockCounts"]

FLOOR = "floor"
STOCKROOM = "stockroom"
FITTING = "fitting"
SOLD_ON_FLOOR = "sold item back on the floor"
UNPAID_IN_FITTING = "unpaid item in the fitting room"

Key = tuple[str, str]  # (gtin, zone)


@dataclass(slots=True)
class _Reader:
    online_since: float | None = None
    online_total: float = 0.0

    def clock(self, now: float) -> float:
        """Seconds this reader has been online, in total."""
        return self.online_total + (now - self.online_since if self.online_since is not None else 0.0)


@dataclass(slots=True)
class _Item:
    gtin: str
    zone: str
    reader: str
    since: float  # monotonic time it arrived in `zone`
    sold: bool
    views: tuple[tuple[str, str], ...] = ()  # (zone, reader) that see it now, oldest arrival first
    missing_at: float | None = None  # its reader's online clock at the last read, once nothing sees it

    @property
    def key(self) -> Key | None:
        return None if self.sold else (self.gtin, self.zone)


@dataclass(frozen=True, slots=True)
class Misplaced:
    epc: str
    gtin: str
    zone: str
    reason: str
    for_s: float


@dataclass(frozen=True, slots=True)
class Replenish:
    gtin: str
    floor: int
    stockroom: int


class StockCounts:
    def __init__(self, roles: Mapping[str, str], *, gone_after_s: float, missing_rounds: int, max_epcs: int,
                 is_sold: Callable[[str], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._is_sold = is_sold
        self.roles: dict[str, str] = {}
        self.gone_after_s = gone_after_s
        self.missing_rounds = missing_rounds
        self.max_epcs = max_epcs
        self._items: dict[str, _Item] = {}
        self._missing: dict[str, None] = {}  # EPCs nothing sees now (an ordered set)
        self._readers: dict[str, _Reader] = {}
        self.counts: dict[str, dict[str, int]] = {}  # gtin -> zone -> items present and not sold
        self._changed: dict[Key, int] = {}  # (gtin, zone) -> its count before the first change since last taken
        self._next_due: float | None = None
        self.dropped = 0  # tag arrivals refused because max_epcs tags were tracked
        self.no_gtin = 0  # tag arrivals without a GTIN (not SGTIN), ignored
        self.expired = 0  # tags counted out after their missing rounds
        self.revision = 0  # moves on with every change of where an item is or whether it is sold
        self.configure(roles, gone_after_s=gone_after_s, missing_rounds=missing_rounds, max_epcs=max_epcs)

    def configure(self, roles: Mapping[str, str], *, gone_after_s: float, missing_rounds: int, max_epcs: int) -> None:
        """Switch settings in place; items in zones that are no longer stock are forgotten."""
        self.roles = dict(roles)
        self.gone_after_s = gone_after_s
        self.missing_rounds = missing_rounds
        self.max_epcs = max_epcs
        for epc in [e for e, it in self._items.items() if it.zone not in self.roles]:
            self._forget(epc)
        for it in self._items.values():
            it.views = tuple(v for v in it.views if v[0] in self.roles)
        self._next_due = self._clock()  # deadlines may have moved: look again at the next tick

    # -- readers ---------------------------------------------------------------------------------

    def _reader(self, reader: str) -> _Reader:
        r = self._readers.get(reader)
        if r is None:  # never heard of: its tag events show it is running
            r = self._readers[reader] = _Reader(online_since=self._clock())
        return r

    def reader_online(self, reader: str) -> None:
        r = self._readers.setdefault(reader, _Reader())
        if r.online_since is None:
            r.online_since = self._clock()
            self._next_due = self._clock()

    def reader_offline(self, reader: str) -> None:
        r = self._readers.setdefault(reader, _Reader())
        if r.online_since is not None:
            now = self._clock()
            r.online_total += now - r.online_since
            r.online_since = None

    def rounds(self, reader: str) -> float:
        """Inventory rounds this reader has completed since it was first heard of."""
        r = self._readers.get(reader)
        return 0.0 if r is None else r.clock(self._clock()) / self.gone_after_s

    def forget_readers(self, keep: Iterable[str]) -> None:
        """Readers no longer configured: their clocks go; their missing tags count on a fresh clock."""
        keep = set(keep)
        for rid in [r for r in self._readers if r not in keep]:
            del self._readers[rid]

    # -- tags ------------------------------------------------------------------------------------

    def seen(self, epc: str, gtin: str | None, zone: str, reader: str) -> None:
        if zone not in self.roles:
            return
        item = self._items.get(epc)
        now = self._clock()
        self.revision += 1
        self._reader(reader)
        if item is None:
            if not gtin:
                self.no_gtin += 1
                return
            if len(self._items) >= self.max_epcs:
                self.dropped += 1
                return
            item = self._items[epc] = _Item(gtin, zone, reader, now, self._is_sold(epc))
            self._add(item.key, 1)
        old = item.key
        if (zone, reader) not in item.views:
            item.views = (*item.views, (zone, reader))
        if item.zone != zone:
            item.zone, item.since = zone, now
        item.reader = reader
        if item.missing_at is not None:
            item.missing_at = None
            self._missing.pop(epc, None)
        self._move(old, item.key)

    def gone(self, epc: str, zone: str, reader: str, reason: str) -> None:
        item = self._items.get(epc)
        if item is None or zone not in self.roles:
            return
        self.revision += 1
        item.views = tuple(v for v in item.views if v != (zone, reader))
        if item.views:
            if all(v[0] != item.zone for v in item.views):  # the zone it was counted in no longer sees it
                old = item.key
                item.zone, item.reader = item.views[-1]
                item.since = self._clock()
                self._move(old, item.key)
            return
        if item.missing_at is not None:
            return
        # "timeout": the last read was one round ago, and that round is already missed.
        clock = self._reader(item.reader).clock(self._clock())
        item.missing_at = clock - (self.gone_after_s if reason == "timeout" else 0.0)
        self._missing[epc] = None
        due = self._due(item)
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due

    def refresh_sold(self, epcs: Iterable[str] | None = None) -> int:
        """Read the sold ledger again for these tags (None: every tag); how many changed."""
        changed = 0
        items = self._items
        for epc in items if epcs is None else epcs:
            item = items.get(epc)
            if item is None:
                continue
            sold = self._is_sold(epc)
            if sold != item.sold:
                self.revision += 1
                old = item.key
                item.sold = sold
                self._move(old, item.key)
                changed += 1
        return changed

    def _due(self, item: _Item) -> float | None:
        """When (monotonic) the item's rounds are up, if its reader keeps running; None while it does not."""
        r = self._readers.get(item.reader)
        if item.missing_at is None or r is None or r.online_since is None:
            return None
        return r.online_since + item.missing_at + self.missing_rounds * self.gone_after_s - r.online_total

    def next_due(self) -> float | None:
        return self._next_due

    def expire(self) -> int:
        """Count out the tags missing for their rounds; how many went."""
        now = self._clock()
        limit = self.missing_rounds * self.gone_after_s
        gone = []
        nxt: float | None = None
        for epc in self._missing:
            item = self._items[epc]
            r = self._readers.get(item.reader)
            if r is None:  # its reader was removed from the config: count on a fresh clock
                r = self._reader(item.reader)
                item.missing_at = 0.0
            assert item.missing_at is not None
            if r.clock(now) - item.missing_at >= limit:
                gone.append(epc)
            elif (due := self._due(item)) is not None and (nxt is None or due < nxt):
                nxt = due
        for epc in gone:
            self._forget(epc)
        self.expired += len(gone)
        self._next_due = nxt
        return len(gone)

    def _forget(self, epc: str) -> None:
        item = self._items.pop(epc)
        self.revision += 1
        self._missing.pop(epc, None)
        self._add(item.key, -1)

    # -- counts ----------------------------------------------------------------------------------

    def _move(self, old: Key | None, new: Key | None) -> None:
        if old != new:
            self._add(old, -1)
            self._add(new, 1)

    def _add(self, key: Key | None, delta: int) -> None:
        if key is None:
            return
        gtin, zone = key
        zones = self.counts.get(gtin)
        if zones is None:
            zones = self.counts[gtin] = {}
        before = zones.get(zone, 0)
        self._changed.setdefault(key, before)
        after = before + delta
        if after:
            zones[zone] = after
        else:
            zones.pop(zone, None)
            if not zones:
                del self.counts[gtin]

    def take_changes(self, limit: int | None = None) -> list[tuple[str, str, int]]:
        """(gtin, zone, count) whose count differs from when it was last taken; at most `limit`, the rest wait."""
        out: list[tuple[str, str, int]] = []
        keys = list(self._changed)
        if limit is not None:
            keys = keys[:limit]
        for key in keys:
            before = self._changed.pop(key)
            gtin, zone = key
            now = self.counts.get(gtin, {}).get(zone, 0)
            if now != before:
                out.append((gtin, zone, now))
        return out

    @property
    def pending_changes(self) -> int:
        return len(self._changed)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """GTIN -> zone -> count, zeros left out (a GTIN or zone that is absent has none); sorted, so that
        the same stock is the same JSON, and compresses better (50 KiB instead of 65 KiB with zstd -3 for
        5,000 GTINs over 8 zones: scripts/bench stock)."""
        return {gtin: dict(sorted(self.counts[gtin].items())) for gtin in sorted(self.counts)}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def missing(self) -> int:
        return len(self._missing)

    def by_role(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(sorted(set(self.roles.values())), 0)
        for zones in self.counts.values():
            for zone, n in zones.items():
                out[self.roles[zone]] += n
        return out

    # -- what needs a hand -------------------------------------------------------------------

    def replenish(self, at_most: int) -> list[Replenish]:
        """GTINs with `at_most` or fewer on the floor while the stockroom has some, fewest on the floor first."""
        floor = [z for z, r in self.roles.items() if r == FLOOR]
        back = [z for z, r in self.roles.items() if r == STOCKROOM]
        out = []
        for gtin, zones in self.counts.items():
            reserve = sum(zones.get(z, 0) for z in back)
            if reserve:
                shelf = sum(zones.get(z, 0) for z in floor)
                if shelf <= at_most:
                    out.append(Replenish(gtin, shelf, reserve))
        out.sort(key=lambda r: (r.floor, -r.stockroom, r.gtin))
        return out

    def misplaced(self, after_s: float) -> list[Misplaced]:
        """Items seen now where they should not be: sold items on the floor, unpaid items in a fitting room
        for `after_s` or longer. Longest first."""
        now = self._clock()
        out = []
        for epc, it in self._items.items():
            if it.missing_at is not None:
                continue
            role = self.roles.get(it.zone)
            if it.sold and role == FLOOR:
                out.append(Misplaced(epc, it.gtin, it.zone, SOLD_ON_FLOOR, now - it.since))
            elif not it.sold and role == FITTING and now - it.since >= after_s:
                out.append(Misplaced(epc, it.gtin, it.zone, UNPAID_IN_FITTING, now - it.since))
        out.sort(key=lambda m: -m.for_s)
        return out
