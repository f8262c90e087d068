"""Proximity offers: the right offer, to the right consenting member, at the right spot, never spam.

A moment is a member entering a zone (`beacon.enter` with a member, named only
with personalisation consent), staying in one (`dwell_s` of continuous
presence, timed here), or starting a Wi-Fi session. At each moment the
candidate campaigns (trigger, zone, schedule in the store's time zone,
audience segments) are tried highest priority first (ties by id), and the
first one the member is not capped for wins: one offer per person per
moment. Caps: per person per campaign per day, a cooldown, and the store's
limit per visit. Marketing consent is required. The member's variant and
holdout are a stable hash (agent/o2o/campaigns.py): a held-out member gets
nothing shown but `offer.held_out`, and is capped the same way, so the two
groups are comparable. A purchase of a campaign's products by the member
within its attribution window (kiosk payment with `member`, or `sold/add`
with `member`) gives `offer.redeemed`, or `offer.holdout_converted`.
Exposures live in o2o-data.db, so caps and attribution survive a restart.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from agent.component import Context, Document, Rule
from agent.documents import Report, applied, rejected, take_versioned
from agent.events import Event
from agent.o2o.campaigns import Campaign, CampaignsDoc, Triggered, assign, by_priority
from agent.o2o.members import Members, o2o_db
from agent.o2o.offers_store import (
    Exposure,
    forget_member,
    load_state,
    save_campaigns,
    save_exposures,
)
from agent.o2o.offers_web import offers_routes
from agent.web.routes import Route

__all__ = ["Offers"]

log = logging.getLogger(__name__)

# Campaign documents: 5,000 campaigns are well under this.
MAX_CAMPAIGNS_BYTES = 8 * 1024 * 1024
# Exposures kept per member (caps and attribution look at the recent ones only).
MAX_EXPOSURES_PER_MEMBER = 200
# People tracked in zones at once; beyond, the oldest presence is forgotten (counted).
MAX_PRESENT = 50_000
# Exposures are written in groups this often (caps and attribution read memory; the disk is for restarts).
SAVE_EVERY_S = 1.0
# Exposures waiting to be written; a disk that stalls this long loses them for restarts only (counted).
MAX_UNSAVED = 100_000


@dataclass(slots=True)
class _Presence:
    zone: str
    since: float  # monotonic
    stay: int  # a new number for every entry: a dwell timer for an old stay is ignored


@dataclass(slots=True)
class _Visit:
    last_seen: float  # wall
    offers: int = 0


class CampaignCount(BaseModel):
    id: str
    triggered: int
    held_out: int
    redeemed: int
    holdout_converted: int
    revenue: str


class OffersStatus(BaseModel):
    version: int
    campaigns: int
    active: int
    members_present: int
    moments: int
    triggered: int
    held_out: int
    capped: int
    redeemed: int


class Offers(Rule):
    key = "offers"
    status_model = OffersStatus
    card = "offers"
    card_order = 35
    kinds = frozenset({"beacon.enter", "beacon.exit", "wifi.session.start", "checkout.paid", "sold.added"})

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(ctx)
        self._clock, self._wall = clock, wall
        self._db = o2o_db(ctx, "offers")
        self.version = 0
        self.campaigns: list[Campaign] = []
        self._index: dict[tuple[str, str | None], list[Campaign]] = {}
        self._present: dict[str, _Presence] = {}
        self._stays = 0
        self._timers: list[tuple[float, str, int, float]] = []  # (due, member, stay, dwell_s)
        self._visits: dict[str, _Visit] = {}
        self._exposures: dict[str, deque[Exposure]] = defaultdict(lambda: deque(maxlen=MAX_EXPOSURES_PER_MEMBER))
        self._wifi_marketing: dict[str, bool] = {}
        self.counts = dict.fromkeys(("moments", "triggered", "held_out", "capped", "redeemed"), 0)
        self._unsaved: list[Exposure] = []  # written in one transaction every SAVE_EVERY_S
        self.lost_exposures = 0

    async def start(self) -> None:
        state = await self._db.open(load_state)
        assert state is not None
        version, doc, exposures = state
        if doc is not None:
            self._use(CampaignsDoc.model_validate(doc))
        self.version = version
        for e in exposures:
            self._exposures[e.member].append(e)
        members = self.ctx.get(Members)
        if members is not None:
            members.on_forget.append(self.forget)
        if self.ctx.demo and self.version == 0:
            from agent.o2o.demo import DEMO_CAMPAIGNS

            await self._apply(CampaignsDoc.model_validate(DEMO_CAMPAIGNS))

    async def stop(self) -> None:
        members = self.ctx.get(Members)
        if members is not None and self.forget in members.on_forget:
            members.on_forget.remove(self.forget)
        try:
            await self._save()
        finally:
            await self._db.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("offers exposures", self._save_loop)]

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            await self._save()

    async def _save(self) -> None:
        batch, self._unsaved = self._unsaved, []
        if batch:
            try:
                await self._db.run(save_exposures, batch)
            except Exception:
                self._unsaved[:0] = batch[: MAX_UNSAVED - len(self._unsaved)]  # again next time
                raise

    def forget(self, member: str) -> None:
        """A member withdrew: their exposures go (memory now, disk in the background)."""
        self._exposures.pop(member, None)
        self._present.pop(member, None)
        self._visits.pop(member, None)
        self._db.submit(forget_member, member).add_done_callback(_log_failure)

    # -- campaigns/set ---------------------------------------------------------------------------

    def documents(self) -> Iterable[Document]:
        yield Document("campaigns/set", self.on_campaigns, "campaigns/reported", max_bytes=MAX_CAMPAIGNS_BYTES,
                       refused=lambda errors: rejected(None, errors, self.version))

    async def on_campaigns(self, payload: bytes, retained: bool = False) -> Report | None:
        return await take_versioned("campaigns", CampaignsDoc, payload, retained, running=self.version,
                                    apply=self._apply, max_bytes=MAX_CAMPAIGNS_BYTES)

    async def _apply(self, doc: CampaignsDoc) -> Report:
        await self._db.run(save_campaigns, doc.version, doc.model_dump(mode="json", by_alias=True))
        self._use(doc)
        self.version = doc.version
        log.info("offers: campaigns version %d, %d campaign(s)", doc.version, len(doc.campaigns))
        return applied(doc.version, campaigns=len(doc.campaigns))

    def _use(self, doc: CampaignsDoc) -> None:
        index: dict[tuple[str, str | None], list[Campaign]] = defaultdict(list)
        for c in doc.campaigns:
            zones: list[str | None] = list(c.trigger.zones) or [None]
            for zone in zones:
                index[(c.trigger.on, zone)].append(c)
        self.campaigns = list(doc.campaigns)
        self._index = {k: by_priority(v) for k, v in index.items()}

    # -- moments ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind == "beacon.enter" and d.get("member"):
            self._enter(d["member"], d.get("zone"), event.ts)
        elif event.kind == "beacon.exit" and d.get("member"):
            p = self._present.get(d["member"])
            if p is not None and p.zone == d.get("zone"):
                del self._present[d["member"]]
        elif event.kind == "wifi.session.start" and d.get("loyalty") and d.get("personalised"):
            self._wifi_marketing[d["loyalty"]] = bool(d.get("marketing"))
            self._moment(d["loyalty"], "wifi.session.start", None, self._index.get(("wifi.session.start", None), []),
                         event.ts)
        elif event.kind in ("checkout.paid", "sold.added") and d.get("member"):
            self._attribute(event)

    def _enter(self, member: str, zone: str | None, wall: float) -> None:
        if zone is None:
            return
        self._stays += 1
        now = self._clock()
        self._present[member] = _Presence(zone, now, self._stays)
        if len(self._present) > MAX_PRESENT:
            self._present.pop(next(iter(self._present)))
        self._moment(member, "enter", zone, self._index.get(("enter", zone), []), wall)
        for dwell_s in sorted({c.trigger.dwell_s or 0 for c in self._index.get(("dwell", zone), [])}):
            heapq.heappush(self._timers, (now + dwell_s, member, self._stays, dwell_s))

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, member, stay, dwell_s = heapq.heappop(self._timers)
            p = self._present.get(member)
            if p is None or p.stay != stay:
                continue  # they left (or came back: a new stay has its own timers)
            candidates = [c for c in self._index.get(("dwell", p.zone), []) if c.trigger.dwell_s == dwell_s]
            self._moment(member, "dwell", p.zone, candidates, self._wall())

    def _consents(self, member: str, trigger: str) -> frozenset[str] | None:
        """The member's segments if they may get an offer now (marketing consent), else None."""
        known = self.ctx.get(Members)
        m = known.get(member) if known is not None else None
        if m is not None and m.marketing:
            return m.segments
        if trigger == "wifi.session.start" and self._wifi_marketing.get(member):
            return frozenset()  # a portal guest who ticked marketing, not (yet) in members/set
        return None

    def _moment(self, member: str, trigger: str, zone: str | None, candidates: list[Campaign], wall: float) -> None:
        if not candidates:
            return
        self.counts["moments"] += 1
        segments = self._consents(member, trigger)
        if segments is None:
            return
        visit = self._visit(member, wall)
        if visit.offers >= self.ctx.config.offers.max_per_visit:
            self.counts["capped"] += 1
            return
        local = datetime.fromtimestamp(wall, self.ctx.config.store.tz)
        for c in candidates:
            if not c.schedule.active(local):
                continue
            if c.audience.segments and not segments.intersection(c.audience.segments):
                continue
            if self._capped(c, member, wall, local.date().isoformat()):
                self.counts["capped"] += 1
                continue
            self._decide(c, member, zone, trigger, wall, local.date().isoformat())
            visit.offers += 1
            return

    def _visit(self, member: str, wall: float) -> _Visit:
        v = self._visits.get(member)
        if v is None or wall - v.last_seen > self.ctx.config.offers.visit_gap_s:
            v = self._visits[member] = _Visit(wall)
            if len(self._visits) > MAX_PRESENT:
                self._visits.pop(next(iter(self._visits)))
        v.last_seen = wall
        return v

    def _capped(self, c: Campaign, member: str, wall: float, day: str) -> bool:
        mine = [e for e in self._exposures.get(member, ()) if e.campaign == c.id]
        if sum(1 for e in mine if e.day == day) >= c.caps.per_person_per_day:
            return True
        return any(wall - e.ts < c.caps.cooldown_s for e in mine)

    def _decide(self, c: Campaign, member: str, zone: str | None, trigger: str, wall: float, day: str) -> None:
        variant, held_out = assign(c, member)
        decision = Triggered(c, member, variant, held_out, zone, trigger)
        exposure = Exposure(c.id, member, variant, held_out, wall, day)
        self._exposures[member].append(exposure)
        if len(self._unsaved) < MAX_UNSAVED:
            self._unsaved.append(exposure)
        else:
            self.lost_exposures += 1  # kept in memory for today's caps; a restart would not see it
        kind = "offer.held_out" if held_out else "offer.triggered"
        self.counts["held_out" if held_out else "triggered"] += 1
        self.ctx.hub.publish(Event(kind, self.ctx.gateway, decision.data()))

    # -- attribution -----------------------------------------------------------------------------

    def _attribute(self, event: Event) -> None:
        d = event.data
        member = d["member"]
        lines = _lines(d, self.ctx)
        bought = {g for g, _ in lines}
        for c in self.campaigns:
            if not c.products or not bought.intersection(c.products):
                continue
            seen = [e for e in self._exposures.get(member, ()) if e.campaign == c.id
                    and 0 <= event.ts - e.ts <= c.attribution_window_s]
            if not seen:
                continue
            last = seen[-1]
            gtins = sorted(bought.intersection(c.products))
            amount = sum((a for g, a in lines if g in c.products), Decimal(0))
            data = {"campaign": c.id, "variant": last.variant, "member": member,
                    "payment_id": d.get("payment_id"), "gtins": gtins, "amount": str(amount)}
            if last.held_out:
                self.ctx.hub.publish(Event("offer.holdout_converted", self.ctx.gateway, data))
            else:
                self.counts["redeemed"] += 1
                self.ctx.hub.publish(Event("offer.redeemed", self.ctx.gateway, data))

    # -- for people ------------------------------------------------------------------------------

    def active_offers(self, zones: Iterable[str]) -> list[dict[str, Any]]:
        """Campaigns running now in these zones, for a signage screen: the offer only, nobody's name."""
        local = datetime.fromtimestamp(self._wall(), self.ctx.config.store.tz)
        wanted = set(zones)
        out = []
        for c in by_priority(self.campaigns):
            if c.signage and wanted.intersection(c.trigger.zones) and c.schedule.active(local):
                out.append(c.offer.model_dump(exclude_defaults=True))
        return out

    def offers_of(self, member: str) -> list[dict[str, Any]]:
        """The member's offers shown today that still run (for the portal's page after connecting)."""
        local = datetime.fromtimestamp(self._wall(), self.ctx.config.store.tz)
        today = local.date().isoformat()
        by_id = {c.id: c for c in self.campaigns}
        out, seen = [], set()
        for e in reversed(self._exposures.get(member, ())):
            c = by_id.get(e.campaign)
            if c is None or e.held_out or e.day != today or c.id in seen or not c.schedule.active(local):
                continue
            seen.add(c.id)
            out.append(c.offer_of(e.variant).model_dump(exclude_defaults=True))
        return out

    @classmethod
    def routes(cls) -> Iterable[Route]:
        return offers_routes()

    def status(self) -> OffersStatus:
        local = datetime.fromtimestamp(self._wall(), self.ctx.config.store.tz)
        return OffersStatus(version=self.version, campaigns=len(self.campaigns),
                            active=sum(1 for c in self.campaigns if c.schedule.active(local)),
                            members_present=len(self._present), **self.counts)


def _lines(data: dict[str, Any], ctx: Context) -> list[tuple[str, Decimal]]:
    """(GTIN, amount) of what was bought: the kiosk's priced lines, or sold/add's items priced from the catalog."""
    out = []
    for ln in data.get("lines") or []:
        if ln.get("gtin"):
            out.append((ln["gtin"], Decimal(str(ln.get("amount") or "0"))))
    for item in data.get("items_sold") or []:
        out.append((item["gtin"], Decimal(str(item.get("price") or "0"))))
    return out


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("offers: writing exposures failed (caps after a restart may let one through): %s", fut.exception())
