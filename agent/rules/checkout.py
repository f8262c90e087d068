"""Self-checkout baskets: the tagged items lying on a station, priced from the local catalog.

Pure state (no I/O, clock injected): `tag.seen` / `tag.gone` in a station's
zones move items in and out; a tag read by two stations belongs to the one
that reads it louder (RSSI), so a neighbour's basket does not steal it; an
item in the sold ledger is not in any basket (it is paid for). Every change
of a basket's content gives it a new `basket_id`, which is what a payment
refers to: paying for an id that is no longer current is a 409.

Prices are Decimal; amounts travel as decimal strings.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from agent.config import StationConfig
from agent.ids import new_id

__all__ = ["Basket", "CheckoutRules", "PaymentError", "Receipt"]

UNKNOWN_ITEM = "Unknown item"
# Basket ids a station remembers, to tell "changed since priced" (409) from "never existed" (404).
_RECENT_IDS = 200
# Payments remembered for idempotent retries.
_PAYMENTS_KEPT = 10_000
_NO_RSSI = -1000


class Catalog(Protocol):
    currency: str

    def lookup(self, gtin: str) -> Any: ...

    def is_sold(self, epc: str) -> bool: ...


@dataclass(slots=True)
class _Tag:
    epc: str
    gtin: str | None
    rssi: int
    zone: str


@dataclass(slots=True)
class Line:
    gtin: str | None
    name: str
    qty: int
    unit_price: Decimal | None
    amount: Decimal | None
    epcs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin, "name": self.name, "qty": self.qty,
            "unit_price": None if self.unit_price is None else str(self.unit_price),
            "amount": None if self.amount is None else str(self.amount),
            "epcs": self.epcs, "known": self.unit_price is not None,
        }


@dataclass(slots=True)
class Basket:
    station: str
    basket_id: str
    lines: list[Line]
    total: Decimal
    currency: str
    unknown: int
    settled: bool

    @property
    def epcs(self) -> list[str]:
        return [e for line in self.lines for e in line.epcs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "station": self.station, "basket_id": self.basket_id, "lines": [ln.to_dict() for ln in self.lines],
            "total": str(self.total), "currency": self.currency, "items": sum(ln.qty for ln in self.lines),
            "unknown_items": self.unknown, "settled": self.settled,
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    payment_id: str
    basket: Basket
    paid_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"payment_id": self.payment_id, "paid_at": self.paid_at, **self.basket.to_dict()}


class PaymentError(Exception):
    """A payment refused; `status` is the HTTP status the kiosk gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _Station:
    config: StationConfig
    tags: dict[str, _Tag] = field(default_factory=dict)  # assigned to this station
    basket_id: str = field(default_factory=new_id)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=_RECENT_IDS))
    changed_at: float = 0.0
    announced: str | None = None


class CheckoutRules:
    def __init__(self, stations: Sequence[StationConfig], catalog: Catalog,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self._catalog = catalog
        self._clock = clock
        self.stations: dict[str, _Station] = {s.id: _Station(s) for s in stations}
        for st in self.stations.values():
            st.announced = st.basket_id  # an empty basket at start is no news
        self._zone_station = {z: s.id for s in stations for z in s.zones}
        self._candidates: dict[str, dict[str, _Tag]] = {}  # epc -> station -> what that station reads
        self._payments: OrderedDict[str, Receipt] = OrderedDict()

    @property
    def zones(self) -> set[str]:
        return set(self._zone_station)

    # -- tags ----------------------------------------------------------------------------------

    def on_seen(self, data: dict[str, Any]) -> set[str]:
        station = self._zone_station.get(data.get("zone", ""))
        if station is None:
            return set()
        epc = data["epc"]
        rssi = data.get("rssi")
        tag = _Tag(epc, data.get("gtin"), rssi if isinstance(rssi, int) else _NO_RSSI, data["zone"])
        self._candidates.setdefault(epc, {})[station] = tag
        return self._reassign(epc)

    def on_gone(self, data: dict[str, Any]) -> set[str]:
        station = self._zone_station.get(data.get("zone", ""))
        if station is None:
            return set()
        epc = data["epc"]
        cands = self._candidates.get(epc)
        if cands is None or station not in cands or cands[station].zone != data["zone"]:
            return set()
        del cands[station]
        if not cands:
            del self._candidates[epc]
        return self._reassign(epc)

    def _reassign(self, epc: str) -> set[str]:
        cands = self._candidates.get(epc, {})
        current = next((sid for sid, st in self.stations.items() if epc in st.tags), None)
        best = None
        if cands:
            best = max(cands, key=lambda sid: (cands[sid].rssi, sid == current))
        changed: set[str] = set()
        if current is not None and current != best:
            del self.stations[current].tags[epc]
            changed.add(current)
        if best is not None:
            st = self.stations[best]
            if epc not in st.tags:
                changed.add(best)
            st.tags[epc] = cands[best]
        for sid in changed:
            self._touch(sid)
        return changed

    def _touch(self, station: str) -> None:
        st = self.stations[station]
        st.recent.append(st.basket_id)
        st.basket_id = new_id()
        st.changed_at = self._clock()

    def refresh(self) -> set[str]:
        """The sold ledger or the catalog changed: every station with items gets a new basket id."""
        changed = {sid for sid, st in self.stations.items() if st.tags}
        for sid in changed:
            self._touch(sid)
        return changed

    # -- baskets -------------------------------------------------------------------------------

    def basket(self, station: str, *, settle_s: float | None = None) -> Basket:
        st = self.stations[station]
        catalog = self._catalog
        by_gtin: dict[str, Line] = {}
        unknown: list[Line] = []
        for tag in sorted(st.tags.values(), key=lambda t: t.epc):
            if catalog.is_sold(tag.epc):
                continue
            item = catalog.lookup(tag.gtin) if tag.gtin else None
            if item is None:
                unknown.append(Line(tag.gtin, UNKNOWN_ITEM, 1, None, None, [tag.epc]))
                continue
            line = by_gtin.get(item.gtin)
            if line is None:
                line = by_gtin[item.gtin] = Line(item.gtin, item.name, 0, item.price, Decimal(0), [])
            line.qty += 1
            line.amount = item.price * line.qty
            line.epcs.append(tag.epc)
        lines = sorted(by_gtin.values(), key=lambda ln: ln.name) + unknown
        total = sum((ln.amount for ln in lines if ln.amount is not None), Decimal(0))
        settle = st.config.settle_s if settle_s is None else settle_s
        settled = self._clock() - st.changed_at >= settle
        return Basket(station, st.basket_id, lines, total, catalog.currency, len(unknown), settled)

    def due_announcements(self) -> list[Basket]:
        """Baskets that changed, have settled, and were not announced yet (for basket.updated)."""
        out = []
        for sid, st in self.stations.items():
            if st.announced != st.basket_id and self._clock() - st.changed_at >= st.config.settle_s:
                st.announced = st.basket_id
                out.append(self.basket(sid))
        return out

    def next_settle_in(self) -> float | None:
        waits = [st.changed_at + st.config.settle_s - self._clock()
                 for st in self.stations.values() if st.announced != st.basket_id]
        return max(0.0, min(waits)) if waits else None

    # -- payment -------------------------------------------------------------------------------

    def check_payment(self, station: str, payment_id: str, basket_id: str, total: Decimal) -> Receipt | Basket:
        """A receipt if this exact payment was taken already (idempotent retry), else the basket to pay.

        Raises PaymentError: 404 unknown basket, 409 changed since priced / total differs /
        unknown items / payment id reused for another basket.
        """
        done = self._payments.get(payment_id)
        if done is not None:
            if done.basket.basket_id == basket_id and done.basket.station == station and done.basket.total == total:
                return done
            raise PaymentError(409, f"payment id {payment_id} was already used for basket {done.basket.basket_id}")
        st = self.stations[station]
        if basket_id != st.basket_id:
            if basket_id in st.recent:
                raise PaymentError(409, "basket changed since it was priced: get the basket again")
            raise PaymentError(404, f"no basket {basket_id} at station {station}")
        basket = self.basket(station)
        if not basket.lines:
            raise PaymentError(409, "the basket is empty")
        if basket.unknown:
            raise PaymentError(409, f"{basket.unknown} unknown item(s) in the basket: call staff")
        if basket.total != total:
            raise PaymentError(409, f"total {total} differs from the priced basket's {basket.total} {basket.currency}")
        return basket

    def record_payment(self, payment_id: str, basket: Basket, paid_at: float) -> Receipt:
        receipt = Receipt(payment_id, basket, paid_at)
        self._payments[payment_id] = receipt
        while len(self._payments) > _PAYMENTS_KEPT:
            self._payments.popitem(last=False)
        self._touch(basket.station)
        return receipt
