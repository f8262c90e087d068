"""The store's O2O measures, counted from the events on the hub into daily rollups (agent/o2o/kpis.py).

Per campaign: triggered, held out, redeemed, holdout conversions, revenue
(from the offers rule's events); per zone: visits and median dwell of people
(members and anonymous phones, never fixed beacons); Wi-Fi consents by kind
(the opt-in rate is each kind over all consents); click-and-collect orders
and wait times. `kpi.daily` goes to the cloud after the store's midnight for
the day before (once, across restarts), and on demand (`cmd/kpis`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.component import Command, Context, Rule
from agent.events import Event
from agent.o2o.kpis import FLUSH_S, KpiBook
from agent.o2o.members import o2o_db

__all__ = ["StoreKpis"]

log = logging.getLogger(__name__)

_OFFER_COUNTERS = {"offer.triggered": "triggered", "offer.held_out": "held_out", "offer.redeemed": "redeemed",
                   "offer.holdout_converted": "holdout_converted"}


class KpisArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    day: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")  # default: today so far


class KpiStatus(BaseModel):
    day: str
    last_sent: str | None


class StoreKpis(Rule):
    key = "kpis"
    status_model = KpiStatus
    kinds = frozenset({*_OFFER_COUNTERS, "beacon.enter", "beacon.exit", "consent.given", "collect.arrived",
                       "collect.handed_over"})

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ctx)
        self._clock = clock
        self._db = o2o_db(ctx, "kpis")
        self.book = KpiBook(self._db, ctx.config.store.tz)
        self._stays: dict[tuple[str, str], float] = {}  # (person, zone) -> entered at
        self.last_sent: str | None = None

    async def start(self) -> None:
        await self._db.open()
        await self.book.open()
        await self.book.load(self.book.day(self._clock()))
        self.last_sent = await self._db.run(_get_sent)
        if self.last_sent is None:  # a new gateway: nothing happened before today, nothing to send
            self.last_sent = (date.fromisoformat(self.today()) - timedelta(days=1)).isoformat()
            await self._db.run(_set_sent, self.last_sent)

    async def stop(self) -> None:
        try:
            await self.book.flush()
        finally:
            await self._db.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("kpis", self._every_now_and_then)]

    async def _every_now_and_then(self) -> None:
        """Flush the counters; after the store's midnight, send the day before (once)."""
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.book.flush()
            yesterday = (datetime.fromtimestamp(self._clock(), self.book.tz).date() - timedelta(days=1)).isoformat()
            if self.last_sent is not None and self.last_sent < yesterday:
                await self.send(yesterday)
                self.last_sent = yesterday
                await self._db.run(_set_sent, yesterday)

    async def send(self, day: str) -> dict[str, Any]:
        rollup = await self.book.rollup(day)
        self.ctx.publish("kpi.daily", rollup)
        log.info("kpis: %s sent (%d counter(s))", day, len(rollup["counters"]))
        return rollup

    # -- counting --------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        d, ts = event.data, event.ts
        if event.kind in _OFFER_COUNTERS:
            campaign = d.get("campaign")
            self.book.add(ts, f"campaign.{campaign}.{_OFFER_COUNTERS[event.kind]}")
            if event.kind in ("offer.redeemed", "offer.holdout_converted"):
                self.book.add(ts, f"campaign.{campaign}.{_OFFER_COUNTERS[event.kind]}_revenue", _money(d))
        elif event.kind in ("beacon.enter", "beacon.exit"):
            self._presence(event)
        elif event.kind == "consent.given":
            self.book.add(ts, "wifi.consents")
            for kind, given in (d.get("choices") or {}).items():
                if given:
                    self.book.add(ts, f"wifi.consents.{kind}")
        elif event.kind == "collect.arrived":
            self.book.add(ts, "collect.arrived")
        elif event.kind == "collect.handed_over":
            self.book.add(ts, "collect.handed_over")
            if isinstance(d.get("wait_s"), int | float):
                self.book.sample(ts, "collect.wait_s", float(d["wait_s"]))

    def _presence(self, event: Event) -> None:
        d = event.data
        person = d.get("member") or d.get("device")
        zone = d.get("zone")
        if not person or not zone:
            return  # a fixed beacon (a trolley, a shelf) is not a visit
        if event.kind == "beacon.enter":
            self.book.add(event.ts, f"zone.{zone}.visits")
            self._stays[(person, zone)] = event.ts
            if len(self._stays) > 50_000:  # people who left without an exit: forget the oldest
                self._stays.pop(next(iter(self._stays)))
        else:
            entered = self._stays.pop((person, zone), None)
            if entered is not None:
                self.book.sample(event.ts, f"zone.{zone}.dwell_s", event.ts - entered)

    # -- for people and ops ----------------------------------------------------------------------

    def today(self) -> str:
        return self.book.day(self._clock())

    def commands(self) -> Iterable[Command]:
        yield Command("kpis", KpisArgs, self._cmd_kpis, "send kpi.daily for a day now (default: today so far)")

    async def _cmd_kpis(self, args: KpisArgs) -> dict[str, Any]:
        day = args.day or self.today()
        try:
            date.fromisoformat(day)
        except ValueError as exc:
            raise ValueError(f"day: {exc}") from exc
        return await self.send(day)

    def status(self) -> KpiStatus:
        return KpiStatus(day=self.today(), last_sent=self.last_sent)


def _money(data: dict[str, Any]) -> Decimal:
    try:
        return Decimal(str(data.get("amount") or "0"))
    except InvalidOperation:
        return Decimal(0)


def _get_sent(conn: Any) -> str | None:
    conn.execute("CREATE TABLE IF NOT EXISTS o2o_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM o2o_meta WHERE key = 'kpi_last_sent'").fetchone()
    return None if row is None else str(row[0])


def _set_sent(conn: Any, day: str) -> None:
    conn.execute("INSERT OR REPLACE INTO o2o_meta (key, value) VALUES ('kpi_last_sent', ?)", (day,))
