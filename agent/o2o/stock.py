"""In-store stock from RFID as a rule: counts per GTIN and zone, the retained `stock` topic, `stock.changed`.

`[stock] zones` gives each RFID zone a role (floor, stockroom, fitting,
checkout, exit). The counting itself, and what "present" means for a shelf
reader that misses tags now and then (inventory rounds), is in
agent/o2o/stock_counts.py; this module feeds it from the hub and shows it:

    retained `o2o/v1/{store}/{gateway}/stock`  {"as_of", "gtins": {GTIN: {zone: count}}}, zeros left out;
                                               every `snapshot_s` and after every (re)connect
    `stock.changed` events                     (gtin, zone, count), at most one per pair per `changed_every_s`
    GET /api/stock                             {"as_of", "complete", "gtins": [{"gtin", "name", "zones", "total"}]}
    GET /api/stock/alerts                      replenish from the stockroom; misplaced items

Warm-up: after a start, a tag is known to be absent only once its reader has
run `missing_rounds` rounds, so until every reader covering a stock zone has
(or WARMUP_MAX_S passed) the counts are `complete: false`, no snapshot is
published (the broker keeps the last one) and no `stock.changed` is sent:
a restart never tells the web shop that the store is empty. The counts at
the end of the warm-up are the baseline the events start from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent.component import Context, Reason, Rule
from agent.components.catalog import Catalog
from agent.components.readers import Readers
from agent.components.sync import Sync
from agent.config import Config, StockConfig
from agent.events import Event, format_ts
from agent.o2o.stock_counts import StockCounts
from agent.sync.topics import Topics
from agent.web.routes import Access, Route
from drivers.rfid.epc import decode_sgtin

__all__ = ["Stock", "StockStatus"]

log = logging.getLogger(__name__)

# Counts are "complete" at the latest this long after a start, even if a reader never came online.
WARMUP_MAX_S = 300.0
# Missing tags are looked at at most this often (each look walks the missing tags).
EXPIRE_EVERY_S = 0.25
# stock.changed events per interval at most; the rest go out with the next one (a restock of a whole
# store must not flood the outbox in one go).
MAX_CHANGED_PER_INTERVAL = 5000
# The snapshot loop looks at the link this often: a reconnect is answered within this time.
PUBLISH_POLL_S = 0.5
# Replenish and misplaced lists are computed again after a change, or this long after the last time (an item
# becomes misplaced by staying); each computation walks every tracked tag.
ALERTS_TTL_S = 2.0
# Lines per list in /api/stock/alerts (the totals count them all).
MAX_LISTED = 100


class StockStatus(BaseModel):
    complete: bool
    tags: int
    gtins: int
    items: dict[str, int]  # counted items per role
    missing: int  # tags not seen now, still counted until their rounds are up
    replenish: int
    misplaced: int
    untracked: int  # tags refused beyond max_epcs
    snapshots: int
    last_snapshot: float | None


class StockLine(BaseModel):
    gtin: str
    name: str | None
    zones: dict[str, int]
    total: int


class StockAnswer(BaseModel):
    as_of: str
    complete: bool
    gtins: list[StockLine]


class ReplenishLine(BaseModel):
    gtin: str
    name: str | None
    floor: int
    stockroom: int


class MisplacedLine(BaseModel):
    epc: str
    gtin: str
    name: str | None
    zone: str
    reason: str
    for_s: float


class StockAlerts(BaseModel):
    replenish_below: int
    replenish: list[ReplenishLine]
    replenish_total: int
    misplaced_after_s: float
    misplaced: list[MisplacedLine]
    misplaced_total: int


def stock_readers(config: Config) -> set[str]:
    """The readers that cover a stock zone."""
    roles = config.stock.zones if config.stock is not None else {}
    return {r.id for r in config.rfid.readers if any(r.zone_for(a) in roles for a in (r.zones or {1: r.id}))}


class Stock(Rule):
    key = "stock"
    status_model = StockStatus
    card = "stock"
    card_order = 45
    sections = ("stock", "rfid")
    kinds = frozenset({"tag.seen", "tag.gone", "reader.online", "reader.offline", "sold.added", "checkout.paid"})

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        self._clock = clock
        cfg = self._cfg
        self.catalog = ctx.require(Catalog)
        self.counts = StockCounts(cfg.zones, gone_after_s=ctx.config.rfid.gone_after_s,
                                  missing_rounds=cfg.missing_rounds, max_epcs=cfg.max_epcs,
                                  is_sold=self.catalog.data.is_sold, clock=clock)
        self.topic = f"{Topics(ctx.config.store.id, ctx.config.store.gateway).base}/stock"
        self._readers = stock_readers(ctx.config)
        self._started = clock()
        self.complete = False
        self._next_expire = 0.0
        self._next_changed = 0.0
        self._next_snapshot = 0.0
        self._snapshot_link: float | None = None  # the connection the last snapshot went out on
        self.snapshots = 0
        self.last_snapshot: float | None = None
        self.changed_events = 0
        self._alerts: tuple[float, int, StockAlerts] | None = None  # (when, counts revision, alerts)

    @property
    def _cfg(self) -> StockConfig:
        cfg = self.ctx.config.stock
        assert cfg is not None
        return cfg

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.stock is not None

    async def start(self) -> None:
        """Seed from the readers already running (a push that adds [stock] to a running gateway): the tags
        they see now will not be announced again."""
        readers = self.ctx.get(Readers)
        if readers is None:
            return
        for rid, runner in readers.runners.items():
            if runner.state == "online":
                self.counts.reader_online(rid)
            for tag in runner.presence.in_view():
                sgtin = decode_sgtin(bytes.fromhex(tag.epc))
                self.counts.seen(tag.epc, sgtin.gtin if sgtin else None, tag.zone, rid)

    async def apply(self, old: Config, new: Config) -> bool:
        cfg = self._cfg
        self.counts.configure(cfg.zones, gone_after_s=new.rfid.gone_after_s, missing_rounds=cfg.missing_rounds,
                              max_epcs=cfg.max_epcs)
        self.counts.forget_readers(r.id for r in new.rfid.readers)
        self._readers = stock_readers(new)
        self._alerts = None
        log.info("stock: settings changed in place (%d zone(s), %d round(s))", len(cfg.zones), cfg.missing_rounds)
        return True

    # -- the rule --------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        d = event.data
        kind = event.kind
        if kind in ("tag.seen", "tag.gone"):
            epc, zone, reader = d.get("epc"), d.get("zone"), d.get("reader") or event.source
            if not isinstance(epc, str) or not isinstance(zone, str):
                return  # not a reader's tag event: nothing to count
            if kind == "tag.seen":
                self.counts.seen(epc, d.get("gtin"), zone, reader)
            else:
                self.counts.gone(epc, zone, reader, d.get("reason", ""))
        elif kind == "reader.online":
            self.counts.reader_online(d.get("reader") or event.source)
        elif kind == "reader.offline":
            self.counts.reader_offline(d.get("reader") or event.source)
        elif kind == "checkout.paid":
            epcs = [e for line in d.get("lines", ()) for e in line.get("epcs", ())]
            self.counts.refresh_sold(epcs or None)
        else:  # sold.added carries a count, not the EPCs: read the ledger again for every tag
            self.counts.refresh_sold()

    def next_due(self) -> float | None:
        dues = [self.counts.next_due()]
        if self.counts.pending_changes:
            dues.append(self._next_changed)
        if not self.complete:
            dues.append(self._clock() + 1.0)
        present = [d for d in dues if d is not None]
        return max(min(present), self._next_expire) if present else None

    def tick(self, now: float) -> None:
        due = self.counts.next_due()
        if due is not None and now >= due and now >= self._next_expire:
            self._next_expire = now + EXPIRE_EVERY_S
            n = self.counts.expire()
            if n:
                log.debug("stock: %d tag(s) missing for %d round(s), counted out", n, self.counts.missing_rounds)
        if not self.complete:
            self._warm_up(now)
            return
        if now >= self._next_changed and self.counts.pending_changes:
            self._next_changed = now + self._cfg.changed_every_s
            for gtin, zone, count in self.counts.take_changes(MAX_CHANGED_PER_INTERVAL):
                self.ctx.publish("stock.changed", {"gtin": gtin, "zone": zone, "count": count})
                self.changed_events += 1

    def _warm_up(self, now: float) -> None:
        rounds = self.counts.missing_rounds
        if now - self._started < WARMUP_MAX_S and any(self.counts.rounds(r) < rounds for r in self._readers):
            return
        self.complete = True
        self.counts.take_changes()  # the baseline: stock.changed reports what changes from here
        self._next_changed = now + self._cfg.changed_every_s
        self._next_snapshot = 0.0
        log.info("stock: counts complete: %d tag(s), %d GTIN(s)", len(self.counts), len(self.counts.counts))

    # -- the retained snapshot -------------------------------------------------------------------

    def snapshot_doc(self) -> dict[str, Any]:
        return {"as_of": format_ts(time.time()), "gtins": self.counts.snapshot()}

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("stock snapshot", self._publish_loop)]

    async def _publish_loop(self) -> None:
        """Every snapshot_s and on every new connection (a broker restart loses nothing retained that way)."""
        while True:
            await asyncio.sleep(PUBLISH_POLL_S)
            sync = self.ctx.get(Sync)
            uplink = sync.uplink if sync is not None else None
            if not self.complete or sync is None or uplink is None or not uplink.ready:
                continue
            now = self._clock()
            link = uplink.connected_since
            if link == self._snapshot_link and now < self._next_snapshot:
                continue
            self._next_snapshot = now + self._cfg.snapshot_s
            self.counts.refresh_sold()  # sold-ledger entries expire: what they covered counts again
            doc = self.snapshot_doc()
            if await sync.publish(self.topic, doc, retain=True, compress=True):
                self._snapshot_link = link
                self.snapshots += 1
                self.last_snapshot = time.time()
                log.debug("stock: snapshot of %d GTIN(s) published", len(doc["gtins"]))

    # -- what staff, the kiosk and ops see -------------------------------------------------------

    def _name(self, gtin: str) -> str | None:
        item = self.catalog.data.lookup(gtin)
        return item.name if item is not None else None

    def lines(self, gtin: str | None = None) -> list[StockLine]:
        counts = self.counts.counts
        wanted = [gtin] if gtin is not None else sorted(counts)
        return [StockLine(gtin=g, name=self._name(g), zones=dict(counts.get(g, {})),
                          total=sum(counts.get(g, {}).values())) for g in wanted]

    def alerts(self) -> StockAlerts:
        now = self._clock()
        cached = self._alerts
        if cached is not None and cached[1] == self.counts.revision and now - cached[0] < ALERTS_TTL_S:
            return cached[2]
        cfg = self._cfg
        refill = self.counts.replenish(cfg.replenish_below)
        wrong = self.counts.misplaced(cfg.misplaced_after_s)
        alerts = StockAlerts(
            replenish_below=cfg.replenish_below, replenish_total=len(refill), misplaced_total=len(wrong),
            misplaced_after_s=cfg.misplaced_after_s,
            replenish=[ReplenishLine(gtin=r.gtin, name=self._name(r.gtin), floor=r.floor, stockroom=r.stockroom)
                       for r in refill[:MAX_LISTED]],
            misplaced=[MisplacedLine(epc=m.epc, gtin=m.gtin, name=self._name(m.gtin), zone=m.zone, reason=m.reason,
                                     for_s=round(m.for_s, 1)) for m in wrong[:MAX_LISTED]])
        self._alerts = (now, self.counts.revision, alerts)
        return alerts

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("GET", "/api/stock", cls._stock, Access.STAFF,
                    "Items present and not sold, per GTIN and zone (?gtin= for one product)", response=StockAnswer,
                    errors=(400,))
        yield Route("GET", "/api/stock/alerts", cls._alerts_route, Access.STAFF,
                    "Products to bring from the stockroom, and items where they should not be",
                    response=StockAlerts)

    async def _stock(self, request: web.Request) -> web.Response:
        gtin = request.query.get("gtin")
        if gtin is not None and not (gtin.isdigit() and len(gtin) == 14):
            return web.json_response({"error": "gtin must be 14 digits"}, status=400)
        answer = StockAnswer(as_of=format_ts(time.time()), complete=self.complete, gtins=self.lines(gtin))
        return web.json_response(answer.model_dump(mode="json"))

    async def _alerts_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.alerts().model_dump(mode="json"))

    def status(self) -> StockStatus:
        alerts = self.alerts()
        c = self.counts
        return StockStatus(complete=self.complete, tags=len(c), gtins=len(c.counts), items=c.by_role(),
                           missing=c.missing, replenish=alerts.replenish_total, misplaced=alerts.misplaced_total,
                           untracked=c.dropped, snapshots=self.snapshots, last_snapshot=self.last_snapshot)

    def health(self) -> Iterable[Reason]:
        if self.counts.dropped:
            yield Reason("amber", f"Stock: {self.counts.dropped:,} tag arrival(s) not counted, more than "
                                  f"{self.counts.max_epcs:,} tags in view: raise [stock] max_epcs.")

    def metrics(self) -> Iterable[Metric]:
        items = GaugeMetricFamily("o2o_stock_items", "Items present and not sold, per zone role", labels=["role"])
        for role, n in self.counts.by_role().items():
            items.add_metric([role], n)
        yield items
        yield GaugeMetricFamily("o2o_stock_tags", "Tags tracked by stock", value=len(self.counts))
        yield CounterMetricFamily("o2o_stock_untracked", "Tag arrivals refused beyond [stock] max_epcs",
                                  value=self.counts.dropped)
        yield CounterMetricFamily("o2o_stock_changed_events", "stock.changed events sent", value=self.changed_events)
