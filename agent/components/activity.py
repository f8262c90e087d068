"""What the staff page shows besides the cards: the live feed, gate alarms to check, the last hour."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from pydantic import BaseModel

from agent.activity import Activity
from agent.component import Component, Context, Reason
from agent.web import sse
from agent.web.auth import user_of
from agent.web.routes import Access, Route

__all__ = ["ActivityComponent", "AlarmsStatus"]

log = logging.getLogger(__name__)


class AlarmsStatus(BaseModel):
    unacknowledged: int


class Sample(BaseModel):
    t: float
    events_per_s: float
    backlog: int


class History(BaseModel):
    every_s: float
    samples: list[Sample]


class Acknowledged(BaseModel):
    by: str
    at: float


class Alarm(BaseModel):
    id: str
    ts: float
    gate: str
    zone: str | None = None
    epc: str
    gtin: str | None = None
    name: str | None = None
    acknowledged: Acknowledged | None


class Alarms(BaseModel):
    alarms: list[Alarm]


class Acked(BaseModel):
    acknowledged: int


class ActivityComponent(Component):
    key = "alarms"
    status_model = AlarmsStatus
    card = "alarms"
    card_order = 30

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.activity = Activity(ctx.hub, lambda: ctx.outbox.depth)

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("staff page feed", self.activity.run)]

    def status(self) -> AlarmsStatus:
        return AlarmsStatus(unacknowledged=self.activity.unacknowledged)

    def health(self) -> Iterable[Reason]:
        n = self.activity.unacknowledged
        if n:
            yield Reason("amber", f"{n} exit-gate alarm(s) to check.")

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("GET", "/api/history", cls._history, Access.STAFF,
                    "Event rate and backlog over the last hour", response=History)
        yield Route("GET", "/api/alarms", cls._alarms, Access.STAFF,
                    "Recent gate alarms and their acknowledgement", response=Alarms)
        yield Route("GET", "/api/events", cls._events, Access.STAFF,
                    "Live events (server-sent events; resumes from Last-Event-ID)", content_type="text/event-stream")
        yield Route("POST", "/api/actions/alarms/{alarm}/ack", cls._ack, Access.STAFF,
                    "Acknowledge a gate alarm (any staff login)", response=Alarm, errors=(404,),
                    params={"alarm": "the alarm's event id"})
        yield Route("POST", "/api/actions/alarms/ack", cls._ack_older, Access.STAFF,
                    "Acknowledge every alarm older than ?older_than_s= seconds (default 0: all)", response=Acked,
                    errors=(400,))

    async def _history(self, request: web.Request) -> web.Response:
        return web.json_response({"every_s": 10, "samples": list(self.activity.history)})

    async def _alarms(self, request: web.Request) -> web.Response:
        return web.json_response({"alarms": list(reversed(self.activity.alarms))})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        queue = self.activity.listen()
        try:
            return await sse.stream(request, queue, list(self.activity.recent)[-50:])
        finally:
            self.activity.unlisten(queue)

    async def _ack(self, request: web.Request) -> web.Response:
        who = user_of(request)
        alarm = self.activity.acknowledge(request.match_info["alarm"], who)
        if alarm is None:
            raise web.HTTPNotFound(text="no such alarm (only the last 100 are kept)")
        log.info("staff: %s acknowledged alarm %s", who, alarm["id"])
        return web.json_response(alarm)

    async def _ack_older(self, request: web.Request) -> web.Response:
        try:
            older = float(request.query.get("older_than_s", "0"))
        except ValueError:
            older = math.nan
        if not (math.isfinite(older) and older >= 0):
            return web.json_response({"error": "older_than_s must be a number of seconds, 0 or more"}, status=400)
        who = user_of(request)
        n = self.activity.acknowledge_older(older, who)
        log.info("staff: %s acknowledged %d alarm(s) older than %.0f s", who, n, older)
        return web.json_response({"acknowledged": n})
