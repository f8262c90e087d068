"""The self-checkout kiosk's API and live page.

    GET  /api/checkout/{station}/basket   the priced basket (station token, or the ops api_token)
    POST /api/checkout/{station}/pay      {"payment_id", "basket_id", "total"} (station token)
    GET  /api/checkout/{station}/stream   server-sent events: the basket each time it settles
    GET  /kiosk/{station}                 the live page (it reads ?token= from its own URL)

Payment answers: 200 with the receipt (a retry of the same payment returns the
same receipt with "duplicate": true), 400 malformed body, 401 wrong token,
404 unknown station or basket, 409 basket changed since priced / total differs
/ unknown items / payment id used for another basket.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.rules.engine import PaymentError
from agent.web import sse

if TYPE_CHECKING:
    from agent.rules.engine import RulesEngine

__all__ = ["add_kiosk_routes"]

log = logging.getLogger(__name__)

# A kiosk pays a few baskets a minute; a bigger body is not a payment.
MAX_PAY_BYTES = 4096


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    basket_id: str = Field(min_length=1, max_length=64)
    total: str = Field(pattern=r"^\d{1,9}(\.\d{1,4})?$")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def add_kiosk_routes(app: web.Application, get_engine: Callable[[], RulesEngine | None],
                     api_token: str | None) -> None:
    """`get_engine` returns the current rules engine (a config push may replace it)."""

    def station_of(request: web.Request, *, ops_allowed: bool) -> str | web.Response:
        engine = get_engine()
        tokens = {} if engine is None else {s.id: s.token.get_secret_value() for s in engine.config.checkout.stations}
        station = request.match_info["station"]
        if station not in tokens:
            return _error(404, f"no station {station!r}")
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token")
        allowed = [tokens[station]] + ([api_token] if ops_allowed and api_token else [])
        if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in allowed):
            log.warning("kiosk: %s %s refused from %s: %s", request.method, request.path, request.remote,
                        "wrong token" if given else "no token")
            return web.json_response({"error": "missing or wrong station token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="o2o-edge kiosk"'})
        return station

    def engine_now() -> RulesEngine:
        engine = get_engine()
        assert engine is not None  # station_of() answered 404 otherwise
        return engine

    async def basket(request: web.Request) -> web.Response:
        station = station_of(request, ops_allowed=True)
        if isinstance(station, web.Response):
            return station
        return web.json_response(engine_now().basket(station).to_dict())

    async def pay(request: web.Request) -> web.Response:
        station = station_of(request, ops_allowed=False)
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
            receipt, duplicate = await engine_now().pay(station, req.payment_id, req.basket_id, total)
        except PaymentError as exc:
            log.info("kiosk %s: pay %s refused (%d): %s", station, req.payment_id, exc.status, exc.message)
            return _error(exc.status, exc.message)
        return web.json_response({**receipt.to_dict(), "duplicate": duplicate})

    async def stream(request: web.Request) -> web.StreamResponse:
        station = station_of(request, ops_allowed=True)
        if isinstance(station, web.Response):
            return station
        engine = engine_now()
        queue = engine.watch(station)
        try:
            return await sse.stream(request, queue, [engine.basket(station).to_dict()], event="basket")
        finally:
            engine.unwatch(station, queue)

    async def page(request: web.Request) -> web.Response:
        engine = get_engine()
        if engine is None or request.match_info["station"] not in {s.id for s in engine.config.checkout.stations}:
            return web.Response(status=404, text="no such station")
        html = resources.files("agent.web").joinpath("static/kiosk.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                                "script-src 'self' 'unsafe-inline'"})

    app.router.add_get("/api/checkout/{station}/basket", basket)
    app.router.add_post("/api/checkout/{station}/pay", pay)
    app.router.add_get("/api/checkout/{station}/stream", stream)
    app.router.add_get("/kiosk/{station}", page)


def kiosk_paths() -> tuple[str, ...]:
    """Paths that carry their own (station token) auth, for the ops auth middleware to let through."""
    return ("/api/checkout/", "/kiosk/")


