"""Self-checkout as a rule: baskets from tag events (agent/rules/checkout.py), payments, live kiosk views."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from agent.component import Context, Rule
from agent.components.catalog import Catalog
from agent.config import Config
from agent.events import Event
from agent.rules.checkout import Basket, CheckoutRules, PaymentError, Receipt
from agent.web.kiosk import kiosk_routes
from agent.web.routes import Route

__all__ = ["CheckoutStatus", "PaymentError", "SelfCheckout"]

log = logging.getLogger(__name__)

# Live kiosk views per station; each gets a small queue of basket updates (a slow one loses old updates).
_VIEW_QUEUE = 16


class StationStatus(BaseModel):
    items: int
    basket_id: str
    lines: list[dict[str, Any]]
    total: str
    currency: str


class CheckoutStatus(BaseModel):
    stations: dict[str, StationStatus]
    payments: int


class SelfCheckout(Rule):
    key = "checkout"
    status_model = CheckoutStatus
    card = "checkout"
    card_order = 40
    sections = ("checkout",)
    kinds = frozenset({"tag.seen", "tag.gone", "sold.added", "catalog.updated"})

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        self._clock = clock
        self.catalog = ctx.require(Catalog)
        stations = ctx.config.checkout.stations
        self.rules = CheckoutRules(stations, self.catalog.data, clock=clock)
        self.tokens = {s.id: s.token.get_secret_value() for s in stations}
        self._locks = {s.id: asyncio.Lock() for s in stations}
        self._views: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {s.id: set() for s in stations}
        self.payments = 0

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return bool(config.checkout.stations)

    # -- the rule ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if event.kind == "tag.seen":
            self.rules.on_seen(event.data)
        elif event.kind == "tag.gone":
            self.rules.on_gone(event.data)
        else:  # sold.added, catalog.updated: prices and what may be paid changed
            self.rules.refresh()

    def next_due(self) -> float | None:
        wait = self.rules.next_settle_in()
        return None if wait is None else self._clock() + wait

    def tick(self, now: float) -> None:
        for basket in self.rules.due_announcements():
            doc = basket.to_dict()
            self.ctx.hub.publish(Event("basket.updated", basket.station, doc))
            for q in list(self._views.get(basket.station, ())):
                if q.full():
                    q.get_nowait()  # a slow view loses the older update, not the newest
                q.put_nowait(doc)

    # -- for the kiosk ---------------------------------------------------------------------------

    def basket(self, station: str) -> Basket:
        return self.rules.basket(station)

    def watch(self, station: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_VIEW_QUEUE)
        self._views[station].add(q)
        return q

    def unwatch(self, station: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._views[station].discard(q)

    async def pay(self, station: str, payment_id: str, basket_id: str, total: Decimal, *,
                  member: str | None = None) -> tuple[Receipt, bool]:
        """Record a payment; (receipt, duplicate). Raises PaymentError with the HTTP status to return."""
        async with self._locks[station]:
            checked = self.rules.check_payment(station, payment_id, basket_id, total)
            if isinstance(checked, Receipt):
                return checked, True
            basket = checked
            # The sold ledger is durable before the kiosk hears "paid": a gate must never alarm for it.
            await self.catalog.data.add_sold(basket.epcs, reason="paid", source=f"checkout:{station}",
                                             ttl_s=self.ctx.config.checkout.sold_ttl_days * 86400)
            receipt = self.rules.record_payment(payment_id, basket, time.time())
            self.payments += 1
            paid = {"station": station, "payment_id": payment_id, "basket_id": basket.basket_id,
                    "lines": [ln.to_dict() for ln in basket.lines], "total": str(basket.total),
                    "currency": basket.currency, "items": len(basket.epcs)}
            if member is not None:
                paid["member"] = member
            self.ctx.hub.publish(Event("checkout.paid", station, paid))
            log.info("checkout %s: paid %s %s for %d item(s) (payment %s)", station, basket.total, basket.currency,
                     len(basket.epcs), payment_id)
            self.tick(self._clock())
            return receipt, False

    @classmethod
    def routes(cls) -> Iterable[Route]:
        return kiosk_routes()

    def status(self) -> CheckoutStatus:
        stations = {}
        for sid in self.rules.stations:
            b = self.rules.basket(sid)
            stations[sid] = StationStatus(items=len(b.epcs), basket_id=b.basket_id,
                                          lines=[ln.to_dict() for ln in b.lines], total=str(b.total),
                                          currency=b.currency)
        return CheckoutStatus(stations=stations, payments=self.payments)
