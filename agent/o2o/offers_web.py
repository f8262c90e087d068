"""The offers' HTTP side: the day's figures for the store (`GET /api/offers`) and the signage screens.

A signage screen shows the offers running in its zones to whoever stands in
front of it: nobody is identified, so no consent is needed, and nothing about
any person (no member, no device, no count of people) is on the page.
"""

from __future__ import annotations

import hmac
import html
import re
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from agent.web.routes import Access, Route

if TYPE_CHECKING:
    from agent.o2o.offers import Offers

__all__ = ["OffersReport", "offers_routes"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Days drawn on the staff card's chart.
CHART_DAYS = 14
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class CampaignDay(BaseModel):
    id: str
    triggered: int
    held_out: int
    redeemed: int
    holdout_converted: int
    revenue: str


class DayPoint(BaseModel):
    day: str
    triggered: int
    redeemed: int


class ZoneDay(BaseModel):
    visits: int
    median_dwell_s: float | None


class OffersReport(BaseModel):
    day: str
    campaigns: list[CampaignDay]
    days: list[DayPoint]
    zones: dict[str, ZoneDay]
    wifi_optin: dict[str, float | int]
    collect: dict[str, float | int | None]


def _counter(counters: dict[str, Any], key: str) -> int:
    return int(counters.get(key, 0))


def report(day: str, rollup: dict[str, Any], series: list[dict[str, Any]], campaigns: list[str]) -> dict[str, Any]:
    """The day's figures from a KPI rollup (agent/o2o/kpis.py) and the last days' counters."""
    c, medians = rollup["counters"], rollup["medians"]
    ids = sorted({*campaigns, *(k.split(".")[1] for k in c if k.startswith("campaign."))})
    rows = [{"id": i, "triggered": _counter(c, f"campaign.{i}.triggered"),
             "held_out": _counter(c, f"campaign.{i}.held_out"), "redeemed": _counter(c, f"campaign.{i}.redeemed"),
             "holdout_converted": _counter(c, f"campaign.{i}.holdout_converted"),
             "revenue": str(c.get(f"campaign.{i}.redeemed_revenue", "0.00"))} for i in ids]
    points = [{"day": d["day"],
               "triggered": sum(v for k, v in d["counters"].items() if k.endswith(".triggered")),
               "redeemed": sum(v for k, v in d["counters"].items() if k.endswith(".redeemed"))} for d in series]
    zones = {}
    for key in c:
        if key.startswith("zone.") and key.endswith(".visits"):
            zone = key[len("zone."):-len(".visits")]
            zones[zone] = {"visits": c[key],
                           "median_dwell_s": medians.get(f"zone.{zone}.dwell_s", {}).get("median")}
    total = _counter(c, "wifi.consents")
    optin: dict[str, float | int] = {"consents": total}
    for kind in ("wifi", "marketing", "personalisation"):
        optin[kind] = round(_counter(c, f"wifi.consents.{kind}") / total, 3) if total else 0.0
    waits = medians.get("collect.wait_s", {})
    collect = {"arrived": _counter(c, "collect.arrived"), "handed_over": _counter(c, "collect.handed_over"),
               "median_wait_s": waits.get("median")}
    return {"day": day, "campaigns": rows, "days": points, "zones": zones, "wifi_optin": optin, "collect": collect}


async def get_offers(comp: Offers, request: web.Request) -> web.Response:
    from agent.o2o.store_kpis import StoreKpis

    kpis = comp.ctx.get(StoreKpis)
    if kpis is None:
        raise web.HTTPNotFound(text="store KPIs are not running")
    day = request.query.get("day") or kpis.today()
    if not _DAY.match(day):
        return web.json_response({"error": "day must be YYYY-MM-DD"}, status=400)
    try:
        start = date.fromisoformat(day)
    except ValueError as exc:
        return web.json_response({"error": f"day: {exc}"}, status=400)
    rollup = await kpis.book.rollup(day)
    by_day = {d["day"]: d for d in await kpis.book.days(CHART_DAYS, day)}
    days = ((start - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1))
    full = [by_day.get(d, {"day": d, "counters": {}}) for d in days]
    return web.json_response(report(day, rollup, full, [c.id for c in comp.campaigns]))


async def signage(comp: Offers, request: web.Request) -> web.Response:
    screens = {s.id: s for s in comp.ctx.config.offers.signage}
    screen = screens.get(request.match_info["screen"])
    given = request.query.get("token", "")
    if screen is None or not hmac.compare_digest(given.encode(), screen.token.get_secret_value().encode()):
        return web.Response(status=404, text="This screen is not set up.", content_type="text/plain")
    e = html.escape
    cards = "".join(f'<section class="offer"><h1>{e(o["title"])}</h1><p>{e(o.get("text", ""))}</p>'
                    + (f'<p class="code">{e(o["code"])}</p>' if o.get("code") else "") + "</section>"
                    for o in comp.active_offers(screen.zones))
    store = e(comp.ctx.config.store.name or comp.ctx.config.store.id)
    page = (f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">'
            f"<title>{store}</title><style>body{{font-family:system-ui,sans-serif;background:#111;color:#fff;"
            "margin:0;padding:2vw}.offer{border:.4vw solid #0b6;border-radius:1vw;padding:1vw 2vw;margin:2vw 0}"
            "h1{font-size:4vw;margin:.5vw 0}p{font-size:2.5vw}.code{font-family:monospace;font-size:3vw}</style>"
            f'</head><body><main id="offers">{cards or f"<p>Welcome to {store}</p>"}</main></body></html>')
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP})


def offers_routes() -> list[Route]:
    return [
        Route("GET", "/api/offers", get_offers, Access.STAFF,
              "The day's proximity-offer figures per campaign, zone visits and dwell, Wi-Fi opt-in, collect waits "
              "(?day=YYYY-MM-DD, default today in the store's time zone)", response=OffersReport, errors=(400, 404),
              tag="o2o"),
        Route("GET", "/signage/{screen}", signage, Access.GUEST,
              "A signage screen: the offers running in its zones, nobody named (?token= of the screen)",
              content_type="text/html", errors=(404,), params={"screen": "the screen's id"}, tag="o2o"),
    ]
