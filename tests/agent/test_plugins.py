"""A feature plugs in with new files plus one registry line: a toy rule with its status, card and route,
registered from the test itself, runs in the real daemon without touching any other file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import BaseModel

from agent import registry
from agent.component import Rule
from agent.events import Event
from agent.web.routes import Access, Route
from tests.conftest import wait_for


class ToyStatus(BaseModel):
    seen: int


class ToyCounter(Rule):
    """Counts tags seen in the zone "toys"; a 'toy.counted' event every 3."""

    key = "toy"
    status_model = ToyStatus
    card = "toy"
    kinds = frozenset({"tag.seen"})

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self.seen = 0

    def on_event(self, event: Event) -> None:
        if event.data.get("zone") == "toys":
            self.seen += 1
            if self.seen % 3 == 0:
                self.ctx.publish("toy.counted", {"seen": self.seen})

    def status(self) -> ToyStatus:
        return ToyStatus(seen=self.seen)

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("GET", "/api/toy", cls._count, Access.STAFF, "How many toys were seen", response=ToyStatus)

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"seen": self.seen})


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(registry, "COMPONENTS", list(registry.COMPONENTS))
    monkeypatch.setattr("agent.app.COMPONENTS", registry.COMPONENTS)
    registry.register(ToyCounter)  # the one registry line
    card = Path(str(resources.files("agent.web").joinpath("static/cards/toy.js")))
    card.write_text('"use strict";\nO2O.card("toy", { title: "Toys", render(body, s) { body.textContent = s.toy.seen; } });\n')
    try:
        yield card
    finally:
        card.unlink()


async def test_a_toy_rule_plugs_in_with_its_card_and_route(toy_registered: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    toys = ra.agent.hub.subscribe("test", kinds={"toy.counted"})
    for i in range(7):
        ra.agent.hub.publish(Event("tag.seen", "r", {"epc": f"{i:024X}", "zone": "toys" if i != 3 else "shoes"}))
    assert (await toys.get()).data == {"seen": 3}
    await wait_for(lambda: ra.agent["toy"].seen == 6, 5)
    h = {"Authorization": "Bearer test-token"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ra.base_url}/api/toy", headers=h) as r:
            assert r.status == 200 and await r.json() == {"seen": 6}
        async with http.get(f"{ra.base_url}/api/status", headers=h) as r:
            assert (await r.json())["toy"] == {"seen": 6}
        async with http.get(f"{ra.base_url}/api/cards", headers=h) as r:
            assert {"key": "toy", "script": "/static/cards/toy.js"} in (await r.json())["cards"]
        async with http.get(f"{ra.base_url}/static/cards/toy.js") as r:
            assert r.status == 200 and "O2O.card" in await r.text()
        async with http.get(f"{ra.base_url}/api/openapi.json", headers=h) as r:
            spec = await r.json()
        assert spec["paths"]["/api/toy"]["get"]["responses"]["200"]["content"]["application/json"]
        assert "ToyStatus" in str(spec["paths"]["/api/status"])  or "toy" in str(spec["components"]["schemas"])
        async with http.get(f"{ra.base_url}/api/toy") as r:
            assert r.status == 401  # declared STAFF: the middleware asks for a login, no prefix list involved


async def test_a_rule_that_raises_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    class Broken(ToyCounter):
        key = "broken"
        card = None

        def on_event(self, event: Event) -> None:
            raise ArithmeticError("a bug")

    monkeypatch.setattr(registry, "COMPONENTS", list(registry.COMPONENTS))
    monkeypatch.setattr("agent.app.COMPONENTS", registry.COMPONENTS)
    registry.register(Broken, before=registry.COMPONENTS[0])
    registry.register(ToyCounter)
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    for i in range(4):
        ra.agent.hub.publish(Event("tag.seen", "r", {"epc": f"{i:024X}", "zone": "toys"}))
    await wait_for(lambda: ra.agent["toy"].seen == 4, 5)
    status = await ra.agent.status()
    assert status["rules"]["errors"] == {"broken": 4} and "ArithmeticError" in status["rules"]["last_error"]
    assert any("store rule is failing" in r for r in status["health"]["reasons"])


async def test_one_component_alone(tmp_path: Path, config_factory) -> None:  # type: ignore[no-untyped-def]
    """A chaos test can start one component alone: here the outbox, without readers, rules, sync or web pages."""
    from agent.app import Agent
    from agent.components.outbox import OutboxComponent

    agent = Agent(config_factory(mqtt={"enabled": False}), registry=[OutboxComponent])
    await agent.start()
    try:
        agent.hub.publish(Event("tag.seen", "r", {"epc": "01"}))
        await wait_for(lambda: agent.outbox.committed >= 2, 5)  # agent.started and the tag
        assert set(agent.ctx.components) == {"outbox"}
    finally:
        await agent.shutdown()
