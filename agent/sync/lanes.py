"""Live before backlog: which outbox rows the uplink sends next, and how they leave the outbox once acked.

When the uplink (re)connects, the outbox is split at `live_from`, the first
row younger than `live_age_s`:

    live      rows from live_from on, and every row committed since: sent first, oldest first, as they come
    business  sales, alarms, consents (Priority.BUSINESS) older than live_from: sent next, through the
              (priority, seq) index, marked "backlog": true
    backlog   the other rows older than live_from, oldest first, marked "backlog": true, sent whenever the
              live lane has nothing waiting (at full rate behind it: the live lane at a store's rate is a
              few batches a second)

Nothing is sent twice on one connection and nothing is skipped: the three
lanes partition the rows, and each batch is deleted only after its PUBACK,
by a delete that touches its own rows only (a backlog range leaves the
business rows inside it to the business lane). A reconnect or a resync
starts over from the oldest unacknowledged row (at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.outbox import Outbox, OutboxRow

__all__ = ["Batch", "Lanes"]


@dataclass(slots=True)
class Batch:
    rows: list[OutboxRow]
    backlog: bool
    lane: str  # "live", "business", "backlog"
    remove: Callable[[], Awaitable[int]]  # deletes exactly these rows from the outbox (after the PUBACK)
    # The same, deleted together with the next acks: a small live batch (a trickle) shares one transaction.
    remove_later: Callable[[], None] | None = None

    @property
    def last_seq(self) -> int:
        return self.rows[-1].seq


class Lanes:
    def __init__(self, outbox: Outbox, *, live_age_s: float) -> None:
        self.outbox = outbox
        self.live_age_s = live_age_s
        self.live_from = 1
        self._live = 0  # the last seq taken by each lane
        self._business = 0
        self._backlog = 0
        self._business_done = self._backlog_done = True

    async def reset(self) -> None:
        """Start over from the oldest unacknowledged row (after a (re)connect or a resync)."""
        await self.outbox.flush_acks()  # acked rows still waiting to be deleted are not sent again
        if self.live_age_s > 0:
            self.live_from = await self.outbox.first_seq_since(time.time() - self.live_age_s)
        else:  # live-first off: everything is one lane, oldest first (the behaviour before lanes)
            self.live_from = 1
        self._live = self.live_from - 1
        self._business = self._backlog = 0
        self._business_done = self._backlog_done = self.live_from <= 1

    @property
    def in_backlog(self) -> bool:
        """Rows older than live_from are still to be taken."""
        return not (self._business_done and self._backlog_done)

    @property
    def live_waiting(self) -> bool:
        """Rows committed since the live lane last took (no database read)."""
        return self.outbox.last_seq > self._live

    @property
    def live_cursor(self) -> int:
        return self._live

    async def next_live(self, limit: int, max_bytes: int) -> Batch | None:
        if not self.live_waiting:
            return None
        rows = await self.outbox.take(self._live, limit, max_bytes)
        if not rows:
            self._live = max(self._live, self.outbox.last_seq)  # acked or dropped meanwhile
            return None
        self._live = rows[-1].seq
        first, last = rows[0].seq, rows[-1].seq
        return Batch(rows, False, "live", lambda: self.outbox.ack_range(first, last),
                     (lambda: self.outbox.ack_later(first, last)) if len(rows) < limit // 4 else None)

    async def next_backlog(self, limit: int, max_bytes: int) -> Batch | None:
        """Business rows of the backlog first, then the rest of it; None once it is all taken."""
        upto = self.live_from - 1
        if not self._business_done:
            rows = await self.outbox.take_business(self._business, upto, limit)
            if rows:
                self._business = rows[-1].seq
                seqs = [r.seq for r in rows]
                return Batch(rows, True, "business", lambda: self.outbox.ack(seqs))
            self._business_done = True
        if not self._backlog_done:
            rows = await self.outbox.take(self._backlog, limit, max_bytes, skip_business_upto=upto, before=self.live_from)
            if rows:
                self._backlog = rows[-1].seq
                first, last = rows[0].seq, rows[-1].seq
                return Batch(rows, True, "backlog",
                             lambda: self.outbox.ack_range(first, last, skip_business_upto=upto))
            self._backlog_done = True
        return None
