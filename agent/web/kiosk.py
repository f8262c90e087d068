"""The self-checkout kiosk's API and live page.

    GET  /api/checkout/{station}/basket   the priced basket (station token, or the ops api_token)
    POST /api/checkout/{station}/pay      {"payment_id", "basket_id", "total"} (station token)
    GET  /api/checkout/{station}/stream   server-sent events: the basket each time it settles
    GET  /kiosk/{station}?token=…         the live page, in the shopper's language (Accept-Language), with the
                                          station's name; "not set up" (401/404) on a wrong token or station

Payment answers: 200 with the receipt (a retry of the same payment returns the
same receipt with "duplicate": true), 400 malformed body, 401 wrong token,
404 unknown station or basket, 409 basket changed since priced / total differs
/ unknown items / payment id used for another basket.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.kiosk_text import kiosk_text, pick_language
from agent.rules.checkout import PaymentError
from agent.web import sse
from agent.web.routes import Access, Route, bearer_token

if TYPE_CHECKING:
    from agent.rules.selfcheckout import SelfCheckout

__all__ = ["BasketDoc", "PayRequest", "Receipt", "kiosk_routes"]

log = logging.getLogger(__name__)

# A kiosk pays a few baskets a minute; a bigger body is not a payment.
MAX_PAY_BYTES = 4096
# The page's template, read once: {{key}} placeholders filled per request (agent/kiosk_text.py).
_TEMPLATE = resources.files("agent.web").joinpath("static/kiosk.html").read_text(encoding="utf-8")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    basket_id: str = Field(min_length=1, max_length=64)
    total: str = Field(pattern=r"^\d{1,9}(\.\d{1,4})?$")
    # The loyalty card scanned at the kiosk, if any: how a purchase is attributed to the offers the member saw.
    member: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")


class BasketLine(BaseModel):
    gtin: str | None
    name: str
    qty: int
    unit_price: str | None
    amount: str | None
    epcs: list[str]
    known: bool


class BasketDoc(BaseModel):
    station: str
    basket_id: str
    lines: list[BasketLine]
    total: str
    currency: str
    items: int
    unknown_items: int
    settled: bool


class Receipt(BasketDoc):
    payment_id: str
    paid_at: float
    duplicate: bool


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _station_of(comp: SelfCheckout, request: web.Request, *, ops_allowed: bool) -> str | web.Response:
    station = request.match_info["station"]
    if station not in comp.tokens:
        return _error(404, f"no station {station!r}")
    given = bearer_token(request) or request.query.get("token")
    api_token = comp.ctx.config.http.api_token
    allowed = [comp.tokens[station]] + ([api_token.get_secret_value()] if ops_allowed and api_token else [])
    if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in allowed):
        log.warning("kiosk: %s %s refused from %s: %s", request.method, request.path, request.remote,
                    "wrong token" if given else "no token")
        return web.json_response({"error": "missing or wrong station token"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="o2o-edge kiosk"'})
    return station


async def basket(comp: SelfCheckout, request: web.Request) -> web.Response:
    station = _station_of(comp, request, ops_allowed=True)
    if isinstance(station, web.Response):
        return station
    return web.json_response(comp.basket(station).to_dict())


async def pay(comp: SelfCheckout, request: web.Request) -> web.Response:
    station = _station_of(comp, request, ops_allowed=False)
    if isinstance(station, web.Response):
        return station
    if request.content_length is not None and request.content_length > MAX_PAY_BYTES:
        return _error(413, f"body too large (limit {MAX_PAY_BYTES} bytes)")
    raw = await request.content.read(MAX_PAY_BYTES + 1)
    if len(raw) > MAX_PAY_BYTES:
        return _error(413, f"body too large (limit {MAX_PAY_BYTES} bytes)")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.info("kiosk %s: pay refused: body is not JSON", station)
        return _error(400, f"body is not JSON: {exc}")
    try:
        req = PayRequest.model_validate(doc)
        total = Decimal(req.total)
    except (ValidationError, InvalidOperation) as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                           for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        log.info("kiosk %s: pay refused: %s", station, detail)
        return _error(400, detail)
    try:
        receipt, duplicate = await comp.pay(station, req.payment_id, req.basket_id, total, member=req.member)
    except PaymentError as exc:
        log.info("kiosk %s: pay %s refused (%d): %s", station, req.payment_id, exc.status, exc.message)
        return _error(exc.status, exc.message)
    return web.json_response({**receipt.to_dict(), "duplicate": duplicate})


async def stream(comp: SelfCheckout, request: web.Request) -> web.StreamResponse:
    station = _station_of(comp, request, ops_allowed=True)
    if isinstance(station, web.Response):
        return station
    queue = comp.watch(station)
    try:
        return await sse.stream(request, queue, [comp.basket(station).to_dict()], event="basket", id_key="basket_id")
    finally:
        comp.unwatch(station, queue)


def _render(lang: str, station_name: str, *, set_up: bool, status: int = 200) -> web.Response:
    """The kiosk page in `lang`: live (it connects to its stream), or saying it is not set up."""
    text = kiosk_text(lang)
    values = {**text, "lang": lang, "station_name": station_name, "state": "connecting" if set_up else "not-set-up",
              "state_text": text["connecting"] if set_up else text["not_set_up_state"]}
    # The script's strings as JSON that cannot close its <script> element; the rest HTML-escaped. One pass, so
    # a station name that looks like a placeholder stays a name.
    values["text_json"] = json.dumps(text, ensure_ascii=False).replace("<", "\\u003c")
    page = _PLACEHOLDER.sub(lambda m: values[m[1]] if m[1] == "text_json" else html.escape(values[m[1]]), _TEMPLATE)
    return web.Response(text=page, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Language": lang,
                                 "Vary": "Accept-Language",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                            "script-src 'self' 'unsafe-inline'"})


async def page(comp: SelfCheckout, request: web.Request) -> web.Response:
    """The live page for `?token=` of a known station; otherwise the same page saying "not set up" (401/404),
    so a kiosk screen tells staff what is wrong instead of trying to reconnect for ever."""
    lang = pick_language(request.headers.get("Accept-Language"))
    station = request.match_info["station"]
    config = next((s for s in comp.ctx.config.checkout.stations if s.id == station), None)
    if station not in comp.tokens or config is None:
        log.warning("kiosk: page for unknown station %r requested from %s", station[:64], request.remote)
        return _render(lang, station[:64], set_up=False, status=404)
    given = request.query.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), comp.tokens[station].encode()):
        log.warning("kiosk: page for %s refused from %s: %s", station, request.remote,
                    "wrong token" if given else "no token")
        return _render(lang, config.name or station, set_up=False, status=401)
    return _render(lang, config.name or station, set_up=True)


def kiosk_routes() -> list[Route]:
    st = {"station": "the station's id"}
    return [
        Route("GET", "/api/checkout/{station}/basket", basket, Access.STATION,
              "The station's priced basket (station token, or the api token)", response=BasketDoc,
              errors=(401, 404), params=st, tag="kiosk"),
        Route("POST", "/api/checkout/{station}/pay", pay, Access.STATION,
              "Pay the basket as priced (station token); a retry returns the same receipt", response=Receipt,
              body=PayRequest, errors=(400, 401, 404, 409, 413), params=st, tag="kiosk", station_only=True),
        Route("GET", "/api/checkout/{station}/stream", stream, Access.STATION,
              "The basket each time it settles (server-sent events)", content_type="text/event-stream",
              errors=(401, 404), params=st, tag="kiosk"),
        Route("GET", "/kiosk/{station}", page, Access.STATION,
              "The kiosk's live page (?token=), in the shopper's language; \"not set up\" on a wrong token or station",
              content_type="text/html", errors=(401, 404), params=st, tag="kiosk"),
    ]
