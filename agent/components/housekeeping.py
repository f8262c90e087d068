"""Life signs in the log and upkeep: a summary line now and then, each event in the demo, the outbox's
freed pages handed back to the file system."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from agent.component import Component

__all__ = ["Housekeeping"]

log = logging.getLogger(__name__)
elog = logging.getLogger("agent.events")

# How often a one-line summary goes to the log (reads, events, outbox), so journald shows life.
SUMMARY_EVERY_S = 60.0
DEMO_SUMMARY_EVERY_S = 15.0
# Hand freed outbox pages back to the file system this often.
VACUUM_EVERY_S = 300.0
# Fields of an event worth a look in its log line.
_DETAIL = ("epc", "gtin", "beacon", "member", "zone", "rssi", "reason", "error", "campaign", "order_id")


class Housekeeping(Component):
    key = "housekeeping"

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("housekeeping", self._housekeeping), ("event log", self._log_events)]

    async def _housekeeping(self) -> None:
        last_vacuum = time.monotonic()
        while True:
            await asyncio.sleep(DEMO_SUMMARY_EVERY_S if self.ctx.demo else SUMMARY_EVERY_S)
            assert self.ctx.status is not None
            st = self.ctx.status()
            readers = ", ".join(f"{r['id']} {r['state']} {r['reads_per_s']:.0f}/s" for r in st.get("readers") or [])
            ob = st["outbox"]
            log.info("summary: readers [%s]; outbox depth %d (%d bytes), committed %d, dropped %d; hub drops %d",
                     readers or "none", ob["depth"], ob["bytes"], ob["committed"], ob["dropped"],
                     sum(s["dropped"] for s in st["hub"]["subscribers"]))
            if time.monotonic() - last_vacuum >= VACUUM_EVERY_S:
                last_vacuum = time.monotonic()
                await self.ctx.outbox.vacuum()

    async def _log_events(self) -> None:
        """Each event as a log line: info in the demo (so a newcomer sees the flow), debug otherwise."""
        level = logging.INFO if self.ctx.demo else logging.DEBUG
        if not elog.isEnabledFor(level):
            await asyncio.Event().wait()  # nothing to log at this level: do not subscribe at all
        sub = self.ctx.hub.subscribe("event-log", maxsize=1000)
        try:
            async for event in sub:
                d = event.data
                detail = " ".join(f"{k}={d[k]}" for k in _DETAIL if d.get(k) is not None)
                elog.log(level, "%s %s %s", event.kind, event.source, detail)
        finally:
            sub.close()
