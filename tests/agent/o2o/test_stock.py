"""The stock rule in the daemon (catalog, stock and the rules engine; events published by hand), and its config."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import Agent
from agent.components.catalog import Catalog
from agent.components.outbox import OutboxComponent
from agent.config import load_config, parse_config
from agent.errors import ConfigError
from agent.events import Event
from agent.o2o.stock import Stock
from agent.rules.engine import RulesEngine
from tests.conftest import config_doc, wait_for

MINIMAL = '[store]\nid = "s"\ngateway = "g"\n'
READERS = """
[[rfid.readers]]
id = "r1"
port = "/dev/null"
protocol = "mercury"
zones = { 1 = "shoes", 2 = "try" }
[[rfid.readers]]
id = "r2"
port = "/dev/null"
protocol = "mercury"
zones = { 1 = "back" }
"""
G1, G2 = "03012345000116", "03012345000123"
H = {"Authorization": "Bearer test-token"}


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("snippet", "expected"), [
    ('[stock]\nzones = { shoes = "shelf" }\n',
     "stock.zones[shoes]: must be one of floor, stockroom, fitting, checkout, exit"),
    ('[stock]\nzones = { shoes = "floor", nowhere = "floor" }\n',
     "stock.zones[nowhere]: no reader covers zone 'nowhere' (known zones: back, shoes, try)"),
    ('[stock]\nzones = { "sho es" = "floor" }\n', "stock.zones[sho es]: must be 1 to 64 letters"),
    ("[stock]\nzones = {}\n", "stock.zones: dictionary should have at least 1 item"),
    ('[stock]\nzones = { shoes = "floor" }\nmissing_rounds = 0\n',
     "stock.missing_rounds: input should be greater than or equal to 1"),
    ('[stock]\nzones = { shoes = "floor" }\nsnapshot_s = "often"\n', "stock.snapshot_s: input should be a valid number"),
    ('[stock]\nzones = { shoes = "floor" }\nmax_epcs = 10\n', "stock.max_epcs: input should be greater than or equal to 100"),
    ('[stock]\nzones = { shoes = "floor" }\nreplenish_at = 2\n', "stock.replenish_at: unknown key"),
])
def test_stock_config_errors_name_their_key_path(tmp_path: Path, snippet: str, expected: str) -> None:
    problems = problems_of(MINIMAL + READERS + snippet, tmp_path)
    assert any(p.startswith(expected) for p in problems), problems


def test_stock_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + READERS + '[stock]\nzones = { shoes = "floor", back = "stockroom" }\n')
    stock = load_config(path).stock
    assert stock is not None and stock.zones == {"shoes": "floor", "back": "stockroom"}
    assert (stock.missing_rounds, stock.replenish_below, stock.misplaced_after_s) == (3, 1, 3600.0)


def _config(tmp_path: Path, **stock: Any) -> Any:
    return parse_config(config_doc(
        tmp_path, mqtt={"enabled": False},
        rfid={"gone_after_s": 0.2, "readers": [
            {"id": "r1", "port": "/dev/null", "protocol": "mercury", "zones": {1: "shoes", 2: "try"}},
            {"id": "r2", "port": "/dev/null", "protocol": "mercury", "zones": {1: "back"}}]},
        stock={"zones": {"shoes": "floor", "back": "stockroom", "try": "fitting"}, "missing_rounds": 2,
               "changed_every_s": 0.2, "snapshot_s": 60, "replenish_below": 1, **stock}))


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    """The daemon with only the outbox, the catalog, stock and the rules engine: no readers, no sync."""
    a = Agent(_config(tmp_path), registry=[OutboxComponent, Catalog, Stock, RulesEngine])
    await a.start()
    catalog = {"version": 1, "currency": "EUR", "products": [{"gtin": G1, "name": "Trail shoe", "price": "89.90"},
                                                              {"gtin": G2, "name": "Sock", "price": "9.90"}]}
    assert (await a["catalog"].on_catalog(json.dumps(catalog).encode()))["status"] == "applied"
    yield a
    await a.shutdown()


def tag(kind: str, epc: str, gtin: str, zone: str, reader: str, **extra: Any) -> Event:
    return Event(kind, reader, {"epc": epc, "gtin": gtin, "zone": zone, "reader": reader, **extra})


async def get(a: Agent, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{a.http_port}{path}", headers=H) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_counts_warm_up_changes_sales_and_alerts(agent: Agent) -> None:
    hub, stock = agent.hub, agent["stock"]
    changed = hub.subscribe("test", kinds={"stock.changed"})
    hub.publish(Event("reader.online", "r1", {"reader": "r1"}))
    hub.publish(Event("reader.online", "r2", {"reader": "r2"}))
    for i in range(3):
        hub.publish(tag("tag.seen", f"A{i}", G1, "back", "r2"))
    hub.publish(tag("tag.seen", "A9", G1, "shoes", "r1"))
    hub.publish(tag("tag.seen", "B1", G2, "shoes", "r1"))
    hub.publish(tag("tag.seen", "B2", G2, "shoes", "r1"))
    hub.publish(Event("tag.seen", "r1", {"epc": "E280116060000209", "zone": "shoes", "reader": "r1"}))  # no GTIN
    await wait_for(lambda: len(stock.counts) == 6, 5)
    first = await get(agent, "/api/stock")
    assert first["complete"] is False  # the readers have not run their rounds yet
    await wait_for(lambda: stock.complete, 5)  # 2 rounds of 0.2 s
    body = await get(agent, "/api/stock")
    assert body["complete"] is True and body["as_of"].endswith("Z")
    assert body["gtins"] == [
        {"gtin": G1, "name": "Trail shoe", "zones": {"back": 3, "shoes": 1}, "total": 4},
        {"gtin": G2, "name": "Sock", "zones": {"shoes": 2}, "total": 2}]
    assert (await get(agent, f"/api/stock?gtin={G2}"))["gtins"] == [
        {"gtin": G2, "name": "Sock", "zones": {"shoes": 2}, "total": 2}]
    alerts = await get(agent, "/api/stock/alerts")
    assert [(r["gtin"], r["floor"], r["stockroom"]) for r in alerts["replenish"]] == [(G1, 1, 3)]
    assert changed.get_nowait_batch(100) == []  # the warm-up is the baseline, not a change

    # a move, a sale online, a sale at a kiosk: one coalesced event per (gtin, zone) that changed
    hub.publish(tag("tag.seen", "A0", G1, "shoes", "r1"))
    hub.publish(tag("tag.gone", "A0", G1, "back", "r2", reason="timeout"))
    await agent["catalog"].add_sold(["B1"], reason="online", source="test")
    await agent["catalog"].data.add_sold(["A9"], reason="paid", source="checkout:sco-1", ttl_s=3600)
    hub.publish(Event("checkout.paid", "sco-1", {"lines": [{"gtin": G1, "epcs": ["A9"]}]}))
    await wait_for(lambda: len(changed) >= 2, 5)
    await wait_for(lambda: stock.counts.pending_changes == 0, 5)
    events = {(e.data["gtin"], e.data["zone"]): e.data["count"] for e in changed.get_nowait_batch(100)}
    assert events == {(G1, "back"): 2, (G2, "shoes"): 1}  # G1 shoes: A0 in, A9 sold -> 1 -> 1, no event
    body = await get(agent, "/api/stock")
    assert [(g["gtin"], g["zones"]) for g in body["gtins"]] == [(G1, {"back": 2, "shoes": 1}), (G2, {"shoes": 1})]
    # B1 (sold online) and A9 (paid) still lie on the floor: misplaced
    alerts = await get(agent, "/api/stock/alerts")
    assert {(m["epc"], m["reason"]) for m in alerts["misplaced"]} == {
        ("B1", "sold item back on the floor"), ("A9", "sold item back on the floor")}
    status = (await agent.status())["stock"]
    assert status["complete"] and status["tags"] == 6 and status["items"] == {
        "fitting": 0, "floor": 2, "stockroom": 2}
    assert status["misplaced"] == 2 and status["untracked"] == 0


async def test_missing_tags_leave_after_their_rounds_and_offline_readers_keep_theirs(agent: Agent) -> None:
    hub, stock = agent.hub, agent["stock"]
    hub.publish(Event("reader.online", "r1", {"reader": "r1"}))
    hub.publish(Event("reader.online", "r2", {"reader": "r2"}))
    hub.publish(tag("tag.seen", "A1", G1, "shoes", "r1"))
    hub.publish(tag("tag.seen", "A2", G1, "back", "r2"))
    await wait_for(lambda: stock.complete and len(stock.counts) == 2, 5)
    hub.publish(tag("tag.gone", "A2", G1, "back", "r2", reason="reader_offline"))
    hub.publish(Event("reader.offline", "r2", {"reader": "r2", "state": "offline"}))
    hub.publish(tag("tag.gone", "A1", G1, "shoes", "r1", reason="timeout"))
    await wait_for(lambda: stock.counts.counts == {G1: {"back": 1}}, 5)  # r1 kept running: A1 is gone
    assert stock.counts.expired == 1
    hub.publish(Event("tag.seen", "r1", {"zone": "shoes"}))  # not a reader's event: ignored, not a rule failure
    hub.publish(Event("tag.gone", "r1", {"epc": 7, "zone": None}))
    hub.publish(tag("tag.seen", "A3", G1, "back", "r1"))
    await wait_for(lambda: len(stock.counts) == 2, 5)
    assert (await agent.status())["rules"]["errors"] == {}


async def test_a_config_push_changes_stock_in_place(agent: Agent, tmp_path: Path) -> None:
    hub, stock = agent.hub, agent["stock"]
    hub.publish(tag("tag.seen", "A1", G1, "shoes", "r1"))
    hub.publish(tag("tag.seen", "A2", G1, "try", "r1"))
    await wait_for(lambda: len(stock.counts) == 2, 5)
    new = _config(tmp_path, zones={"shoes": "floor", "back": "stockroom"}, replenish_below=3)
    await agent.reconfigure(new.model_copy(update={"version": 2}))
    assert agent["stock"] is stock  # not restarted: the counts are kept
    assert stock.counts.counts == {G1: {"shoes": 1}} and stock.counts.roles == {"shoes": "floor", "back": "stockroom"}


def test_stock_is_off_without_its_section(tmp_path: Path) -> None:
    doc = config_doc(tmp_path)
    assert not Stock.wanted(parse_config(doc))


async def test_stock_added_by_a_push_counts_the_tags_already_in_view(tmp_path: Path, config_factory,
                                                                      start_agent) -> None:  # type: ignore[no-untyped-def]
    """Presence announces a tag once, when it appears: stock started later seeds itself from the readers."""
    from drivers.rfid.simulator import ManualScenario, PtySimulator, demo_epc

    scenario = ManualScenario()
    for serial in range(5):
        scenario.put(demo_epc(0, serial), antenna=1)
    scenario.put(demo_epc(1, 99), antenna=2)
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "r1", period_s=0.05)
    try:
        config = config_factory(mqtt={"enabled": False}, rfid={"gone_after_s": 0.3, "readers": [
            {"id": "r1", "port": sim.start(), "protocol": "mercury", "baudrate": 115200,
             "zones": {1: "shoes", 2: "back"}}]})
        ra = await start_agent(config)
        runner = ra.agent["readers"].runners["r1"]
        await wait_for(lambda: len(runner.presence) == 6, 10)
        stock_cfg = parse_config({**config.model_dump(mode="json", exclude={"stock"}), "version": 2,
                                  "stock": {"zones": {"shoes": "floor", "back": "stockroom"}}})
        await ra.agent.reconfigure(stock_cfg.model_copy(update={"http": config.http}))
        stock = ra.agent["stock"]
        assert sum(n for z in stock.counts.counts.values() for n in z.values()) == 6  # at once, from the readers
        await wait_for(lambda: stock.complete, 5)
        assert {z: n for zones in stock.counts.counts.values() for z, n in zones.items()} == {"shoes": 5, "back": 1}
    finally:
        sim.stop()
