"""Click-and-collect over HTTP: the orders for the staff page, and the handover (any staff login)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent.web.auth import user_of
from agent.web.routes import Access, Route

if TYPE_CHECKING:
    from agent.o2o.collect import Collect

__all__ = ["collect_routes"]

# A handover body lists a few scanned EPCs at most.
MAX_BODY = 64 * 1024


async def orders(comp: Collect, request: web.Request) -> web.Response:
    return web.json_response({"orders": [o.model_dump() for o in comp.view()]})


async def handover(comp: Collect, request: web.Request) -> web.Response:
    from agent.o2o.collect import HandoverBody

    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return web.json_response({"error": f"body too large (limit {MAX_BODY} bytes)"}, status=413)
    try:
        body = HandoverBody.model_validate(json.loads(raw) if raw.strip() else {})
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
    except ValidationError as exc:
        return web.json_response({"error": "; ".join(e["msg"] for e in exc.errors())}, status=400)
    order_id = request.match_info["order_id"]
    try:
        done = await comp.hand_over(order_id, body.epcs, user_of(request))
    except KeyError:
        return web.json_response({"error": f"no open order {order_id!r}"}, status=404)
    return web.json_response(done.model_dump())


def _models() -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    from agent.o2o.collect import HandedOver, HandoverBody, Orders

    return Orders, HandedOver, HandoverBody


def collect_routes() -> list[Route]:
    orders_model, done_model, body_model = _models()
    return [
        Route("GET", "/api/collect", orders, Access.STAFF,
              "Click-and-collect orders: waiting, arrived (customer seen), handed over, cancelled",
              response=orders_model, tag="o2o"),
        Route("POST", "/api/collect/{order_id}/handover", handover, Access.STAFF,
              "Hand an order over (any staff login, or the api token); its EPCs and any in the body join the "
              "sold ledger", response=done_model, body=body_model, errors=(400, 404, 413),
              params={"order_id": "the order's id"}, tag="o2o"),
    ]
