"""The outbox as a component: its writer task, its section of the status, its health and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent.component import Command, Component, Context, NoArgs, Reason
from agent.errors import StorageError
from agent.hub import Subscription
from agent.outbox import OutboxStats

__all__ = ["OutboxComponent", "OutboxStatus"]

log = logging.getLogger(__name__)

# The status page polls every few seconds: probe the disk at most this often.
HEALTH_PROBE_EVERY_S = 5.0
# A write probe slower than this means the storage is failing (an SD card at its end).
HEALTH_PROBE_TIMEOUT_S = 2.0


class OutboxStatus(BaseModel):
    depth: int
    bytes: int
    oldest_age_s: float | None
    dropped: int
    dropped_by_priority: dict[str, int]
    committed: int
    write_errors: int
    disk_bytes: int
    max_bytes: int
    ok: bool
    error: str | None
    disk_full: bool = False
    disk_free_bytes: int | None = None


class OutboxComponent(Component):
    key = "outbox"
    status_model = OutboxStatus

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.outbox = ctx.outbox
        self._sub: Subscription | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stats: OutboxStats | None = None
        self._health: tuple[float, bool, str] = (-HEALTH_PROBE_EVERY_S, True, "ok")

    async def start(self) -> None:
        cfg = self.ctx.config.outbox
        await self.outbox.open()
        # Subscribed before any other component starts: nothing published is missed.
        self._sub = self.ctx.hub.subscribe("outbox", maxsize=cfg.queue_size)
        # Not under the supervisor: a writer that stops is a red health line, and the stop drains it.
        self._writer = asyncio.create_task(self.outbox.run_writer(self._sub), name="outbox-writer")
        self._writer.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("outbox: the writer stopped (%s: %s): events are no longer recorded; restart the daemon",
                      type(exc).__name__, exc, exc_info=exc)

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()  # the writer drains what is queued, then returns
        if self._writer is not None:
            await asyncio.wait([self._writer])  # a writer that died was logged then (_writer_done)
        await self.outbox.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("outbox stats", self._refresh)]

    async def _refresh(self) -> None:
        """Keeps a snapshot for the status (oldest age needs a read) and probes writability."""
        while True:
            self._stats = await self.outbox.stats()
            await self.probe()
            await self.outbox.reclaim()  # after a drain, the disk space goes back to the file system
            await asyncio.sleep(1.0)

    async def probe(self, *, max_age_s: float = HEALTH_PROBE_EVERY_S) -> tuple[bool, str]:
        """Can the outbox take a write now? Cached for `max_age_s`."""
        at, ok, reason = self._health
        if time.monotonic() - at < max_age_s:
            return ok, reason
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_S):
                await self.outbox.check_writable()
            ok, reason = True, "ok"
        except TimeoutError:
            ok, reason = False, "outbox: write check timed out (disk too slow?)"
        except StorageError as exc:
            ok, reason = False, str(exc)
        if self._writer is not None and self._writer.done():
            died = None if self._writer.cancelled() else self._writer.exception()
            ok, reason = False, "outbox writer stopped" + (f" ({type(died).__name__}: {died})" if died else "")
        self._health = (time.monotonic(), ok, reason)
        return ok, reason

    async def healthz(self) -> tuple[bool, str]:
        """/healthz: the probe, and a full disk (the watchdog pets on the probe alone: a restart frees no disk)."""
        ok, reason = await self.probe(max_age_s=0)
        if ok and self.outbox.disk_full:
            return False, f"disk full: {self._disk_text()}"
        return ok, reason

    def _disk_text(self) -> str:
        free = self.outbox.disk_free_bytes()
        room = f"{free / 1e6:.1f} MB free" if free is not None else "no room"
        return f"{room} on {self.outbox.path.parent}; the oldest telemetry is dropped to keep recording"

    def status(self) -> OutboxStatus:
        ob = self.outbox
        st = self._stats
        _, ok, reason = self._health
        age = st.oldest_age_s if st is not None and ob.depth else None
        if age is None and st is not None and st.depth == 0 and ob.depth:
            age = 0.0  # all of it came after the last look (at most a second ago): not "unknown"
        return OutboxStatus(
            depth=ob.depth, bytes=ob.bytes, oldest_age_s=None if age is None else round(age, 1),
            dropped=ob.dropped, dropped_by_priority=dict(ob.dropped_by_priority), committed=ob.committed,
            write_errors=ob.write_errors, disk_bytes=ob.disk_bytes(), max_bytes=ob.max_bytes,
            ok=ok, error=None if ok else reason, disk_full=ob.disk_full, disk_free_bytes=ob.disk_free_bytes(),
        )

    def health(self) -> Iterable[Reason]:
        _, ok, reason = self._health
        if not ok:
            yield Reason("red", f"Event storage failing: {reason or 'unknown error'}. Call support.")
        elif self.outbox.disk_full:
            yield Reason("red", f"The gateway's disk is full ({self._disk_text()}). Free space or call support.")
        elif self.outbox.disk_limit is not None:
            yield Reason("amber", f"The disk holds only {self.outbox.disk_limit / 1e6:.0f} MB of waiting events "
                                  f"(the cap is {self.outbox.max_bytes / 1e6:.0f} MB): free space on the gateway.")
        if self.outbox.dropped:
            yield Reason("amber", f"{self.outbox.dropped:,} old events dropped because local storage was full.")

    def metrics(self) -> Iterable[Metric]:
        ob = self.outbox
        st = self._stats
        yield GaugeMetricFamily("o2o_outbox_depth", "Events waiting in the outbox", value=ob.depth)
        yield GaugeMetricFamily("o2o_outbox_bytes", "Bytes of event JSON waiting", value=ob.bytes)
        yield GaugeMetricFamily("o2o_outbox_disk_bytes", "Outbox file size on disk", value=ob.disk_bytes())
        yield GaugeMetricFamily("o2o_outbox_oldest_age_seconds", "Age of the oldest waiting event",
                                value=(st.oldest_age_s if st is not None and ob.depth else 0.0) or 0.0)
        drops = CounterMetricFamily("o2o_dropped", "Events dropped, by reason", labels=["reason"])
        for prio, n in ob.dropped_by_priority.items():
            drops.add_metric([f"outbox_cap_{prio}"], n)
        for sub in self.ctx.hub.stats():
            drops.add_metric([f"hub_queue_{sub.name}"], sub.dropped)
        yield drops

    def commands(self) -> Iterable[Command]:
        yield Command("outbox-stats", NoArgs, self._cmd_stats, "depth, bytes and oldest age of the outbox")

    async def _cmd_stats(self, args: NoArgs) -> dict[str, object]:
        st = await self.outbox.stats()
        return {"depth": st.depth, "bytes": st.bytes, "oldest_age_s": st.oldest_age_s}

