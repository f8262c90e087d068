"""How the outbox spends its transactions at a store's rate: fewer, larger ones for telemetry, none delayed for
anything that matters.

Every transaction costs a handful of 4 KiB pages in the WAL, then again in the database at the checkpoint,
whatever it holds (the table's last leaf, the index's, the counters, the sequence). A commit or an ack per
serial chunk (every ~2 ms) wrote ~30 KB and burnt ~1.3 ms of CPU each; at 100 events/s, one event per
transaction is ~30 KB of SD card wear per 255-byte event. So:

    commits   telemetry waits up to `linger_s` (and while it fills less than a commit) for company;
              the moment anything else is queued (a sale, an alarm, a reader going offline) everything
              queued is committed at once, with an fsync ([storage] synchronous = "by-class")
    acks      a small batch's delete (a live trickle) waits ACK_LINGER_S for the next ones and they go
              in one transaction; a full batch (a backlog draining) is deleted at once

Telemetry held in memory is what a crash of the process (not of the machine) can lose: at most `linger_s`
of presence events; docs/durability.md has the measured trade-off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agent.events import Event, Priority
from agent.hub import Subscription

__all__ = ["ACK_LINGER_S", "AckBuffer", "gather"]

log = logging.getLogger(__name__)

# How often a telemetry batch looks for something urgent while it lingers.
_PEEK_S = 0.02
# Acks of small batches wait this long for company.
ACK_LINGER_S = 0.5
# More pending acked rows than this are deleted at once.
_ACK_FLUSH_ROWS = 2000
_TELEMETRY = Priority.TELEMETRY


async def gather(sub: Subscription, limit: int, linger_s: float, enough: int) -> list[Event]:
    """The next commit's events: at least one; telemetry alone waits up to `linger_s` for `enough` events or for
    anything else to arrive; [] once `sub` is closed and drained."""
    batch = await sub.get_batch(limit)
    if not batch or linger_s <= 0:
        return batch
    deadline = time.monotonic() + linger_s
    while (len(batch) < enough and not sub.closed and all(e.priority == _TELEMETRY for e in batch)
           and (left := deadline - time.monotonic()) > 0):
        await asyncio.sleep(min(_PEEK_S, left))
        batch += sub.get_nowait_batch(limit - len(batch))
    return batch


class AckBuffer:
    """Acked ranges waiting to be deleted together; `flush` deletes them in one transaction on the writer."""

    def __init__(self, delete: Callable[[list[tuple[int, int, int]]], Awaitable[int]]) -> None:
        self._delete = delete
        self._pending: list[tuple[int, int, int]] = []  # (first, last, skip_business_upto)
        self._rows = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.errors = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, first: int, last: int, skip_business_upto: int = 0) -> None:
        self._pending.append((first, last, skip_business_upto))
        self._rows += last - first + 1
        if self._rows >= _ACK_FLUSH_ROWS:
            self._start(0.0)
        elif self._task is None:
            self._start(ACK_LINGER_S)

    def _start(self, after_s: float) -> None:
        if self._task is not None and not self._task.done() and after_s > 0:
            return
        self._task = asyncio.get_running_loop().create_task(self._later(after_s))

    async def _later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        try:
            await self.flush()
        except Exception as exc:  # kept pending: retried with the next ones (a lost ack only means a resend)
            self.errors += 1
            log.warning("outbox: deleting acknowledged events failed, retrying: %s", exc)
            self._task = None
            self._start(ACK_LINGER_S)
            return
        if self._task is asyncio.current_task():
            self._task = None

    async def flush(self) -> int:
        """Delete every pending range now (a reconnect, a resync and close call it first)."""
        async with self._lock:
            if not self._pending:
                return 0
            pending, rows = self._pending, self._rows
            self._pending, self._rows = [], 0
            try:
                return await self._delete(pending)
            except BaseException:
                self._pending[:0] = pending
                self._rows += rows
                raise
