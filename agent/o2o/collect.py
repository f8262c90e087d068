"""Click-and-collect: "your order is ready, and we saw you arrive".

Orders waiting for pickup arrive with `collect/add` (idempotent: the same
order id replaces the order) and leave with `collect/cancel`; they live in
o2o-data.db. When an order's member is recognised (their app's iBeacon, heard
with personalisation consent, or their Wi-Fi session with a loyalty id), the
order becomes `arrived`: `collect.arrived` goes to the cloud and every open
staff page announces it (its live feed carries the event). Any staff login
hands the order over (`POST /api/collect/{order_id}/handover`): the order's
EPCs, and any the staff scanned, join the sold ledger first, so the exit gate
stays quiet for them; `collect.handed_over` carries the wait (arrival to
handover). Orders waiting longer than `[collect] stale_after_days` are
flagged on the page.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.component import Context, Document, Reason, Rule
from agent.components.catalog import Catalog
from agent.documents import Report, one_entry_each, validation_errors
from agent.events import Event
from agent.json_bytes import json_bytes
from agent.o2o.collect_web import collect_routes
from agent.o2o.members import Members, o2o_db
from agent.storage import storage_errors, transaction
from agent.web.routes import Route

__all__ = ["Collect", "CollectAdd", "Order"]

log = logging.getLogger(__name__)

# Orders in one collect/add; a store hands over hundreds a day, not this.
MAX_ORDERS = 5000
MAX_ITEMS = 500
MAX_ITEMS_PER_MESSAGE = 50_000
MAX_ADD_BYTES = 4 * 1024 * 1024
# Orders waiting or arrived at once: beyond this the cloud is not cancelling what was never collected.
MAX_OPEN_ORDERS = 10_000
# Orders kept after they are handed over or cancelled (for the page and the day's figures), then deleted.
KEEP_DONE_S = 7 * 86400
State = Literal["waiting", "arrived", "handed_over", "cancelled"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collect_orders (order_id TEXT PRIMARY KEY, doc BLOB NOT NULL, state TEXT NOT NULL,
    added_at REAL NOT NULL, arrived_at REAL, zone TEXT, done_at REAL);
"""


# Orders and their items are many small objects: slotted dataclasses take a fraction of a BaseModel's memory
# (a 4 MiB collect/add of one-GTIN items parsed into ~116 MiB as BaseModels).
@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Item:
    gtin: str = Field(pattern=r"^\d{8}$|^\d{12,14}$")
    epc: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{2}){4,62}$")

    @field_validator("epc")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class OrderDoc:
    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    member: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")
    pickup_point: str = Field(min_length=1, max_length=64)
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


class CollectAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orders: list[OrderDoc] = Field(min_length=1, max_length=MAX_ORDERS)

    @field_validator("orders")
    @classmethod
    def _items_in_all(cls, orders: list[OrderDoc]) -> list[OrderDoc]:
        total = sum(len(o.items) for o in orders)
        if total > MAX_ITEMS_PER_MESSAGE:
            raise ValueError(f"{total:,} items in one message, at most {MAX_ITEMS_PER_MESSAGE:,}: split the orders")
        one_entry_each((o.order_id for o in orders), "orders", "order")  # neither of the two is taken
        return orders


class CollectCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_ids: list[str] = Field(min_length=1, max_length=MAX_ORDERS)


@dataclass(slots=True)
class Order:
    doc: OrderDoc
    state: State
    added_at: float
    arrived_at: float | None = None
    zone: str | None = None
    done_at: float | None = None

    @property
    def epcs(self) -> list[str]:
        return [i.epc for i in self.doc.items if i.epc]


class OrderView(BaseModel):
    order_id: str
    state: State
    pickup_point: str
    arrived_at: float | None
    member_name: str | None
    items: int
    added_at: float
    stale: bool


class Orders(BaseModel):
    orders: list[OrderView]


class HandoverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epcs: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)

    @field_validator("epcs")
    @classmethod
    def _hex(cls, value: list[str]) -> list[str]:
        out = []
        for i, epc in enumerate(value):
            if len(epc) % 2 or not 8 <= len(epc) <= 124 or any(c not in "0123456789abcdefABCDEF" for c in epc):
                raise ValueError(f"epcs[{i}]: an EPC is 4 to 62 bytes of hex")
            out.append(epc.upper())
        return out


class HandedOver(BaseModel):
    order_id: str
    state: State
    wait_s: float | None
    sold: int


class CollectStatus(BaseModel):
    waiting: int
    arrived: int
    stale: int
    rejected: int
    refused_full: int = 0  # new orders refused while MAX_OPEN_ORDERS were open


class Collect(Rule):
    key = "collect"
    status_model = CollectStatus
    card = "collect"
    card_order = 25
    kinds = frozenset({"beacon.enter", "wifi.session.start"})

    def __init__(self, ctx: Context, *, wall: Callable[[], float] = time.time) -> None:
        super().__init__(ctx)
        self._wall = wall
        self._db = o2o_db(ctx, "collect")
        self.orders: dict[str, Order] = {}
        self.rejected = 0
        self.refused_full = 0

    async def start(self) -> None:
        orders = await self._db.open(_load)
        assert orders is not None
        self.orders = orders
        if self.ctx.demo and not self.orders:
            from agent.o2o.demo import DEMO_ORDERS

            await self.on_add(json_bytes(DEMO_ORDERS))

    async def stop(self) -> None:
        await self._db.close()

    # -- collect/add, collect/cancel -------------------------------------------------------------

    def documents(self) -> Iterable[Document]:
        yield Document("collect/add", self.on_add, "collect/reported", max_bytes=MAX_ADD_BYTES)
        yield Document("collect/cancel", self.on_cancel, "collect/reported")

    def _rejected(self, what: str, errors: list[dict[str, str]]) -> Report:
        self.rejected += 1
        log.warning("%s rejected: %d problem(s), first: %s", what, len(errors), errors[0])
        return {"status": "rejected", "command": what, "errors": errors}

    async def on_add(self, payload: bytes, retained: bool = False) -> Report | None:
        try:
            doc = CollectAdd.model_validate_json(payload)
        except ValidationError as exc:
            return self._rejected("collect/add", validation_errors(exc))
        now = self._wall()
        added, ignored = [], []
        open_now = self._open_count()
        refused = 0
        for i, o in enumerate(doc.orders):
            old = self.orders.get(o.order_id)
            if old is not None and old.state == "handed_over":
                ignored.append({"path": f"orders[{i}].order_id",
                                "message": f"order {o.order_id} was handed over already"})
                continue
            if old is None and open_now >= MAX_OPEN_ORDERS:
                refused += 1
                ignored.append({"path": f"orders[{i}]", "message": f"the store already holds {MAX_OPEN_ORDERS:,} "
                                "orders waiting or arrived: cancel the ones never collected"})
                continue
            if old is None:
                open_now += 1
            if old is not None and old.state == "arrived" and old.doc.member == o.member:
                order = Order(o, "arrived", old.added_at, old.arrived_at, old.zone)  # new content, still here
            else:
                order = Order(o, "waiting", old.added_at if old else now)
            self.orders[o.order_id] = order
            added.append(order)
        await self._db.run(_save, added)
        log.info("collect: %d order(s) added or replaced, %d ignored", len(added), len(ignored))
        if refused:
            self.refused_full += refused
            log.warning("collect: %d new order(s) refused: %s orders are open already (%d refused since start)",
                        refused, f"{MAX_OPEN_ORDERS:,}", self.refused_full)
        return {"status": "applied", "command": "collect/add", "orders": [o.doc.order_id for o in added],
                "errors": ignored}

    async def on_cancel(self, payload: bytes, retained: bool = False) -> Report | None:
        try:
            doc = CollectCancel.model_validate_json(payload)
        except ValidationError as exc:
            return self._rejected("collect/cancel", validation_errors(exc))
        cancelled, unknown = [], []
        for oid in doc.order_ids:
            order = self.orders.get(oid)
            if order is None or order.state in ("handed_over", "cancelled"):
                unknown.append(oid)
                continue
            order.state, order.done_at = "cancelled", self._wall()
            cancelled.append(order)
        await self._db.run(_save, cancelled)
        errors = [{"path": "order_ids", "message": f"no open order {oid}"} for oid in unknown]
        return {"status": "applied", "command": "collect/cancel", "orders": [o.doc.order_id for o in cancelled],
                "errors": errors}

    # -- arrival ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind == "beacon.enter":
            member, zone = d.get("member"), d.get("zone")
        elif d.get("personalised") and d.get("loyalty"):
            member, zone = d.get("loyalty"), "wifi"
        else:
            return
        if not member:
            return
        for order in self.orders.values():
            if order.state == "waiting" and order.doc.member == member:
                self._arrived(order, zone, event.ts)

    def _arrived(self, order: Order, zone: str | None, ts: float) -> None:
        order.state, order.arrived_at, order.zone = "arrived", ts, zone
        self._db.submit(_save, [order]).add_done_callback(_log_failure)
        self.ctx.hub.publish(Event("collect.arrived", self.ctx.gateway, {
            "order_id": order.doc.order_id, "member": order.doc.member, "pickup_point": order.doc.pickup_point,
            "zone": zone, "member_name": self._name_of(order.doc.member)}))
        log.info("collect: order %s, customer arrived (%s)", order.doc.order_id, zone)

    def _name_of(self, member: str) -> str | None:
        members = self.ctx.get(Members)
        m = members.get(member) if members is not None else None
        return m.name if m is not None else None

    # -- handover --------------------------------------------------------------------------------

    async def hand_over(self, order_id: str, extra_epcs: list[str], by: str) -> HandedOver:
        order = self.orders.get(order_id)
        if order is None or order.state in ("handed_over", "cancelled"):
            raise KeyError(order_id)
        epcs = sorted({*order.epcs, *extra_epcs})
        if epcs:  # durable before the customer walks to the gate with them
            await self.ctx.require(Catalog).add_sold(epcs, reason="collect", source=f"collect:{order_id}")
        now = self._wall()
        wait = round(now - order.arrived_at, 1) if order.arrived_at is not None else None
        order.state, order.done_at = "handed_over", now
        await self._db.run(_save, [order])
        self.ctx.hub.publish(Event("collect.handed_over", self.ctx.gateway, {"order_id": order_id, "wait_s": wait}))
        log.info("collect: order %s handed over by %s (%d item(s) in the sold ledger)", order_id, by, len(epcs))
        return HandedOver(order_id=order_id, state="handed_over", wait_s=wait, sold=len(epcs))

    # -- for people ------------------------------------------------------------------------------

    def view(self) -> list[OrderView]:
        now = self._wall()
        stale_s = self.ctx.config.collect.stale_after_days * 86400
        out = []
        for o in sorted(self.orders.values(), key=lambda o: (o.state != "arrived", o.added_at)):
            if o.done_at is not None and now - o.done_at > KEEP_DONE_S:
                continue
            out.append(OrderView(order_id=o.doc.order_id, state=o.state, pickup_point=o.doc.pickup_point,
                                 arrived_at=o.arrived_at, member_name=self._name_of(o.doc.member),
                                 items=len(o.doc.items), added_at=o.added_at,
                                 stale=o.state == "waiting" and now - o.added_at > stale_s))
        return out

    @classmethod
    def routes(cls) -> Iterable[Route]:
        return collect_routes()

    def status(self) -> CollectStatus:
        v = self.view()
        return CollectStatus(waiting=sum(1 for o in v if o.state == "waiting"),
                             arrived=sum(1 for o in v if o.state == "arrived"),
                             stale=sum(1 for o in v if o.stale), rejected=self.rejected,
                             refused_full=self.refused_full)

    def _open_count(self) -> int:
        """Orders waiting or arrived: what MAX_OPEN_ORDERS bounds."""
        return sum(1 for o in self.orders.values() if o.state in ("waiting", "arrived"))

    def health(self) -> Iterable[Reason]:
        arrived = [o for o in self.view() if o.state == "arrived"]
        if arrived:
            yield Reason("amber", f"{len(arrived)} click-and-collect customer(s) waiting at the counter.")
        if self.refused_full and self._open_count() >= MAX_OPEN_ORDERS:
            yield Reason("amber", f"Click-and-collect is full ({MAX_OPEN_ORDERS:,} open orders): "
                                  f"{self.refused_full} new order(s) refused; the orders never collected need cancelling.")


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("collect: saving an order failed: %s", fut.exception())


# -- on the worker thread ------------------------------------------------------------------------


_ORDER: TypeAdapter[OrderDoc] = TypeAdapter(OrderDoc)


def _load(conn: sqlite3.Connection) -> dict[str, Order]:
    conn.executescript(_SCHEMA)
    with storage_errors("collect read failed"):
        conn.execute("DELETE FROM collect_orders WHERE done_at IS NOT NULL AND done_at < ?",
                     (time.time() - KEEP_DONE_S,))
        rows = conn.execute("SELECT doc, state, added_at, arrived_at, zone, done_at FROM collect_orders").fetchall()
    out = {}
    for doc, state, added, arrived, zone, done in rows:
        o = _ORDER.validate_json(doc)
        out[o.order_id] = Order(o, state, added, arrived, zone, done)
    return out


def _save(conn: sqlite3.Connection, orders: list[Order]) -> None:
    rows = [(o.doc.order_id, json_bytes(o.doc), o.state, o.added_at, o.arrived_at, o.zone,
             o.done_at) for o in orders]
    with storage_errors("collect write failed"), transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO collect_orders (order_id, doc, state, added_at, arrived_at, zone, "
                         "done_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
