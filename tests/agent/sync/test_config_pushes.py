"""Config pushes that a real store survives, over a real mosquitto: removals must be named, config/patch,
local-only sections repeated unchanged, masked secrets kept, retained pushes, and the reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.publish as mqtt_publish
import pytest

from agent.config import Config
from agent.config_patch import merge_patch, null_paths
from tests.conftest import Mosquitto, Subscriber, config_doc, make_config, wait_for

BASE = "o2o/v1/test-store/gw-test"
KIOSK_TOKEN = "kiosk-secret-1"


def send(broker: Mosquitto, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
    mqtt_publish.single(f"{BASE}/{topic}", json.dumps(payload), qos=1, retain=retain, hostname="127.0.0.1",
                        port=broker.port)


def answers(sub: Subscriber) -> list[dict[str, Any]]:
    """The answers to pushes on config/reported, without the report a gateway sends on every connect."""
    return [d for d in (json.loads(p) for p in sub.payloads(f"{BASE}/config/reported")) if d.get("trigger") != "connect"]


async def reports(sub: Subscriber, count: int) -> list[dict[str, Any]]:
    await wait_for(lambda: len(answers(sub)) >= count, 10)
    return answers(sub)


def store_sections(broker: Mosquitto) -> dict[str, Any]:
    """A store with two readers (pyserial's loopback: they always open), a station, a gate, a tuned outbox."""
    reader = {"port": "loop://", "protocol": "em4100", "baudrate": 9600, "silence_timeout_s": 3600}
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
        "outbox": {"max_bytes": 8 * 1024 * 1024},
        "rfid": {"readers": [{"id": "till", **reader, "zones": {1: "till"}},
                             {"id": "door", **reader, "zones": {1: "exit"}}]},
        "checkout": {"stations": [{"id": "sco-1", "zones": ["till"], "token": KIOSK_TOKEN}],
                     "gates": [{"id": "exit-1", "zones": ["exit"]}]},
    }


@pytest.fixture
async def store(mosquitto: Mosquitto, tmp_path: Path, start_agent):  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    ra = await start_agent(make_config(tmp_path, **store_sections(mosquitto)))
    await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
    yield ra, sub
    sub.close()


async def get(ra: Any, path: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{ra.base_url}{path}",
                                                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def test_a_push_that_would_remove_things_is_rejected_with_the_list(store, mosquitto: Mosquitto,
                                                                          tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra, sub = store
    before = ra.agent.config
    send(mosquitto, "config/set", {"version": 2, "store": {"id": "test-store", "gateway": "gw-test"}})
    (r,) = await reports(sub, 1)
    assert r["status"] == "rejected" and r["version"] == 2 and r["running_version"] == 0
    assert {e["path"] for e in r["errors"]} == {
        "outbox", "rfid.readers[till]", "rfid.readers[door]", "checkout.stations[sco-1]", "checkout.gates[exit-1]"}
    assert all('name "' in e["message"] and '"remove"' in e["message"] for e in r["errors"])
    assert ra.agent.config is before and set(ra.agent["readers"].runners) == {"till", "door"}
    assert not (tmp_path / "config-pushed.json").exists()

    # One reader and the gate go, named; the rest of the document keeps what stays.
    doc = {"version": 3, "store": {"id": "test-store", "gateway": "gw-test"}, "outbox": {"max_bytes": 8388608},
           "rfid": {"readers": [{"id": "till", "port": "loop://", "protocol": "em4100", "baudrate": 9600,
                                 "silence_timeout_s": 3600, "zones": {"1": "till"}}]},
           "checkout": {"stations": [{"id": "sco-1", "zones": ["till"], "token": KIOSK_TOKEN}]}}
    send(mosquitto, "config/set", {**doc, "remove": ["rfid.readers[door]"]})
    r = (await reports(sub, 2))[-1]
    assert r["status"] == "rejected" and [e["path"] for e in r["errors"]] == ["checkout.gates[exit-1]"]
    send(mosquitto, "config/set", {**doc, "remove": ["rfid.readers[door]", "checkout.gates"]})
    r = (await reports(sub, 3))[-1]
    assert r["status"] == "applied" and r["running_version"] == 3 and r["rolled_back"] is False, r
    assert set(ra.agent["readers"].runners) == {"till"} and ra.agent.config.checkout.gates == []


async def test_config_patch_is_applied_reported_and_kept(store, mosquitto: Mosquitto, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra, sub = store
    send(mosquitto, "config/patch", {"version": 5, "rfid": {"gone_after_s": 2.5}, "store": {"name": "Odéon"}})
    (r,) = await reports(sub, 1)
    assert {k: r[k] for k in ("version", "status", "errors", "running_version", "rolled_back")} == {
        "version": 5, "status": "applied", "errors": [], "running_version": 5, "rolled_back": False}
    cfg = ra.agent.config
    assert cfg.rfid.gone_after_s == 2.5 and cfg.store.name == "Odéon" and len(cfg.rfid.readers) == 2
    assert cfg.outbox.max_bytes == 8 * 1024 * 1024 and cfg.checkout.stations[0].token.get_secret_value() == KIOSK_TOKEN
    assert r["config"]["rfid"]["gone_after_s"] == 2.5 and r["config"]["checkout"]["stations"][0]["token"] == "***"
    assert set(ra.agent["readers"].runners) == {"till", "door"}

    # A null deletes (it names itself); an array replaces the whole list, so dropping a reader needs "remove".
    send(mosquitto, "config/patch", {"version": 6, "checkout": {"gates": None}})
    r = (await reports(sub, 2))[-1]
    assert r["status"] == "applied" and ra.agent.config.checkout.gates == []
    send(mosquitto, "config/patch", {"version": 7, "rfid": {"readers": [ra.agent.config.rfid.readers[0].model_dump(
        mode="json")]}})
    r = (await reports(sub, 3))[-1]
    assert r["status"] == "rejected" and [e["path"] for e in r["errors"]] == ["rfid.readers[door]"]
    send(mosquitto, "config/patch", {"version": 7, "mqtt": {"host": "elsewhere.example"}})
    r = (await reports(sub, 4))[-1]
    assert r["status"] == "rejected" and [e["path"] for e in r["errors"]] == ["mqtt.host"]
    assert ra.agent.config.version == 6

    local = ra.agent.ctx.local_config
    await ra.stop()
    ra2 = await start_agent(local)
    assert ra2.agent.config.version == 6 and ra2.agent.config.rfid.gone_after_s == 2.5
    assert ra2.agent.config.checkout.gates == []


async def test_take_the_running_config_bump_the_version_push_it_back(store, mosquitto: Mosquitto,
                                                                      tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra, sub = store
    send(mosquitto, "config/patch", {"version": 1, "rfid": {"gone_after_s": 4.0}})
    (r,) = await reports(sub, 1)
    assert r["status"] == "applied"
    # What ops have: the reported config (secrets masked) plus the sections the local file holds, as written.
    local = config_doc(tmp_path, **store_sections(mosquitto))
    doc = {**r["config"], **{k: local[k] for k in ("storage", "http", "mqtt")}, "version": 2}
    send(mosquitto, "config/set", doc)
    r = (await reports(sub, 2))[-1]
    assert r["status"] == "applied" and r["running_version"] == 2, r["errors"]
    assert (await get(ra, "/api/checkout/sco-1/basket", KIOSK_TOKEN))[0] == 200  # "***" kept the running kiosk token
    assert ra.agent.config.rfid.gone_after_s == 4.0

    # The diagnostics bundle's form (every section, secrets masked) works too; a changed local key does not.
    _, bundle = await get(ra, "/api/diagnostics", "test-token")
    doc = {**bundle["config"], "version": 3}
    assert doc["http"]["api_token"] == "***"
    send(mosquitto, "config/set", doc)
    r = (await reports(sub, 3))[-1]
    assert r["status"] == "applied", r["errors"]
    doc = {**doc, "version": 4, "mqtt": {**doc["mqtt"], "port": 1}, "storage": {**doc["storage"], "path": "/elsewhere.db"},
           "store": {**doc["store"], "gateway": "gw-other"}}
    send(mosquitto, "config/set", doc)
    r = (await reports(sub, 4))[-1]
    assert r["status"] == "rejected"
    assert {e["path"] for e in r["errors"]} == {"mqtt.port", "storage.path", "store.gateway"}
    assert all("local file" in e["message"] for e in r["errors"])
    # A masked secret for a station that does not run has nothing to keep.
    doc = {**bundle["config"], "version": 4}
    doc["checkout"]["stations"].append({"id": "sco-2", "zones": ["till"], "token": "***"})
    send(mosquitto, "config/set", doc)
    r = (await reports(sub, 5))[-1]
    assert r["status"] == "rejected" and r["errors"][0]["path"] == "checkout.stations[1].token"


async def test_retained_pushes_already_in_force_are_not_applied_again(store, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub = store
    try:
        send(mosquitto, "config/patch", {"version": 4, "rfid": {"gone_after_s": 1.5}}, retain=True)
        (r,) = await reports(sub, 1)
        assert r["status"] == "applied"
        # The broker restarts: the gateway resubscribes and gets the retained push again; nothing happens.
        uplink = ra.agent["mqtt"].uplink
        applied = ra.agent.hub.published_by_kind.get("config.applied")
        mosquitto.stop()
        mosquitto.start()
        await wait_for(lambda: uplink.reconnects >= 1 and uplink.ready, 15)
        send(mosquitto, "config/patch", {"version": 4, "rfid": {"gone_after_s": 9.0}})  # not retained: answered
        await wait_for(lambda: any(x["status"] == "rejected" for x in answers(sub)), 15)
        rs = answers(sub)
        assert [x["status"] for x in rs if not x.get("config") or x["version"] == 4][-1] == "rejected"
        assert "stale" in rs[-1]["errors"][0]["message"]
        assert ra.agent.hub.published_by_kind.get("config.applied") == applied
        assert ra.agent.config.rfid.gone_after_s == 1.5
    finally:
        mqtt_publish.single(f"{BASE}/config/patch", b"", qos=1, retain=True, hostname="127.0.0.1", port=mosquitto.port)


async def test_catalog_reported_echoes_the_version(store, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    _, sub = store
    send(mosquitto, "catalog/set", {"version": 7, "currency": "EUR", "products": [
        {"gtin": "03012345000116", "name": "Trail running shoe", "price": "89.90"}]})
    await wait_for(lambda: sub.payloads(f"{BASE}/catalog/reported"), 10)
    send(mosquitto, "catalog/set", {"version": 6, "currency": "EUR", "products": []})
    await wait_for(lambda: len(sub.payloads(f"{BASE}/catalog/reported")) >= 2, 10)
    first, second = (json.loads(p) for p in sub.payloads(f"{BASE}/catalog/reported"))
    assert (first["version"], first["status"], first["running_version"]) == (7, "applied", 7)
    assert (second["version"], second["status"], second["running_version"]) == (6, "rejected", 7)


async def test_stations_without_any_reader(mosquitto: Mosquitto, tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    """A config with stations or gates and no reader is refused by the schema (no reader covers their zones);
    should one run anyway (built in code, past the cross-checks), the health line is red, not amber."""
    sections = store_sections(mosquitto)
    sections["rfid"] = {"readers": []}
    from agent.config import parse_config
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match=r"checkout.stations\[0\].zones\[0\]: no reader covers zone 'till'"):
        parse_config(config_doc(tmp_path, **sections))
    ra = await start_agent(Config.model_validate(config_doc(tmp_path, **sections)))
    health = (await ra.agent.status())["health"]
    assert health["level"] == "red" and "No RFID reader is configured" in health["summary"]


def test_merge_patch_rfc7396_examples() -> None:
    """The test cases of RFC 7396 appendix A."""
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}), ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}), ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}), ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}), (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]), ({"a": "foo"}, None, None), ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}), ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, result in cases:
        assert merge_patch(target, patch) == result, (target, patch)
    assert null_paths({"ble": None, "wifi": {"portal": None, "presence": {"window_s": 5}}}) == ["ble", "wifi.portal"]
