"""Runs the rules on hub events: baskets (with their settle time), gate alarms, payments.

One task consumes the tag events from the hub, in order, and decides in
memory; what it decides goes back on the hub as events (and so to the
outbox and the cloud), and to the live kiosk views.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from agent.catalog import LocalData
from agent.config import Config
from agent.events import Event
from agent.hub import Hub
from agent.rules.alarm_output import AlarmOutputs
from agent.rules.checkout import Basket, CheckoutRules, PaymentError, Receipt
from agent.rules.gate import GateRules

__all__ = ["PaymentError", "RulesEngine"]

log = logging.getLogger(__name__)

KINDS = ("tag.seen", "tag.gone", "sold.added", "catalog.updated", "checkout.paid")
# Live kiosk views per station; each gets a small queue of basket updates (a slow one loses old updates).
_VIEW_QUEUE = 16


class RulesEngine:
    def __init__(self, config: Config, hub: Hub, data: LocalData, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.hub = hub
        self.data = data
        self.checkout = CheckoutRules(config.checkout.stations, data, clock=clock)
        self.gates = GateRules(config.checkout.gates, data, clock=clock)
        self.outputs = AlarmOutputs(config.checkout.gates)
        self._locks = {s.id: asyncio.Lock() for s in config.checkout.stations}
        self._views: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {s.id: set() for s in config.checkout.stations}
        # Subscribed now, not when run() starts: no tag event published in between is missed.
        self._sub = hub.subscribe("rules", maxsize=50_000, kinds=KINDS)
        self.alarms = 0
        self.payments = 0

    async def run(self) -> None:
        if self._sub.closed:  # restarted by the supervisor after a crash
            self._sub = self.hub.subscribe("rules", maxsize=50_000, kinds=KINDS)
        sub = self._sub
        try:
            while True:
                timeout = self.checkout.next_settle_in()
                batch: list[Event] = []
                try:
                    async with asyncio.timeout(timeout):
                        batch = await sub.get_batch(1000)
                except TimeoutError:
                    pass
                for event in batch:
                    self._on_event(event)
                self._announce()
        finally:
            sub.close()
            await self.outputs.close()

    def _on_event(self, event: Event) -> None:
        data = event.data
        if event.kind == "tag.seen":
            alarm = self.gates.on_seen(data)
            if alarm is not None:
                self.alarms += 1
                self.hub.publish(Event("gate.alarm", alarm.gate, alarm.to_dict()))
                log.warning("gate %s: ALARM unpaid %s (%s) in %s", alarm.gate, alarm.name, alarm.epc, alarm.zone)
                self.outputs.fire(alarm)
            self.checkout.on_seen(data)
        elif event.kind == "tag.gone":
            self.checkout.on_gone(data)
        elif event.kind in ("sold.added", "catalog.updated"):
            self.checkout.refresh()

    def _announce(self) -> None:
        for basket in self.checkout.due_announcements():
            doc = basket.to_dict()
            self.hub.publish(Event("basket.updated", basket.station, doc))
            for q in list(self._views.get(basket.station, ())):
                if q.full():
                    q.get_nowait()  # a slow view loses the older update, not the newest
                q.put_nowait(doc)

    # -- for the kiosk API ---------------------------------------------------------------------

    def basket(self, station: str) -> Basket:
        return self.checkout.basket(station)

    def watch(self, station: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_VIEW_QUEUE)
        self._views[station].add(q)
        return q

    def unwatch(self, station: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._views[station].discard(q)

    async def pay(self, station: str, payment_id: str, basket_id: str, total: Decimal) -> tuple[Receipt, bool]:
        """Record a payment; (receipt, duplicate). Raises PaymentError with the HTTP status to return."""
        async with self._locks[station]:
            checked = self.checkout.check_payment(station, payment_id, basket_id, total)
            if isinstance(checked, Receipt):
                return checked, True
            basket = checked
            # The sold ledger is durable before the kiosk hears "paid": a gate must never alarm for it.
            await self.data.add_sold(basket.epcs, reason="paid", source=f"checkout:{station}",
                                     ttl_s=self.config.checkout.sold_ttl_days * 86400)
            receipt = self.checkout.record_payment(payment_id, basket, time.time())
            self.payments += 1
            self.hub.publish(Event("checkout.paid", station, {
                "station": station, "payment_id": payment_id, "basket_id": basket.basket_id,
                "lines": [ln.to_dict() for ln in basket.lines], "total": str(basket.total),
                "currency": basket.currency, "items": len(basket.epcs),
            }))
            log.info("checkout %s: paid %s %s for %d item(s) (payment %s)", station, basket.total, basket.currency,
                     len(basket.epcs), payment_id)
            self._announce()
            return receipt, False

    def status(self) -> dict[str, Any]:
        return {
            "stations": {sid: {"items": len(self.checkout.basket(sid).epcs), "basket_id": st.basket_id}
                         for sid, st in self.checkout.stations.items()},
            "alarms": self.alarms, "alarms_suppressed": self.gates.suppressed, "payments": self.payments,
            "outputs": self.outputs.stats(),
        }
