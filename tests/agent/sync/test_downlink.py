"""Central ops over a real mosquitto: commands, config pushes (signed), catalog and sold items."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config_push import canonical
from agent.events import Event
from drivers.rfid.simulator import ManualScenario, PtySimulator
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for

BASE = "o2o/v1/test-store/gw-test"


def send(broker: Mosquitto, topic: str, payload: bytes | str | dict[str, Any]) -> None:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    mqtt_publish.single(f"{BASE}/{topic}", payload, qos=1, hostname="127.0.0.1", port=broker.port)


async def reply(sub: Subscriber, topic: str, count: int = 1) -> list[dict[str, Any]]:
    """The answers on `topic`, without the config/reported a gateway sends on every connect."""
    def answers() -> list[dict[str, Any]]:
        docs = [json.loads(p) for p in sub.payloads(f"{BASE}/{topic}")]
        return [d for d in docs if not (isinstance(d, dict) and d.get("trigger") == "connect")]

    await wait_for(lambda: len(answers()) >= count, 10)
    return answers()


def mqtt_section(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, **extra}


@pytest.fixture
async def ops(mosquitto: Mosquitto, tmp_path: Path, start_agent):  # type: ignore[no-untyped-def]
    """An agent with one simulated reader, connected to the broker, and an ops-side subscriber."""
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "r1", period_s=0.05)
    port = sim.start()
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    config = make_config(tmp_path, mqtt=mqtt_section(mosquitto), rfid={"readers": [
        {"id": "r1", "port": port, "protocol": "mercury", "baudrate": 115200, "zones": {1: "z1"}}]})
    ra = await start_agent(config)
    await wait_for(lambda: ra.agent["mqtt"].uplink.ready and ra.agent["readers"].runners["r1"].state == "online", 10)
    yield ra, sub, port
    sub.close()
    sim.stop()


# -- commands ------------------------------------------------------------------------------

async def test_ping_status_and_outbox_stats(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    _, sub, _ = ops
    send(mosquitto, "cmd/ping", {"id": "p1"})
    (r,) = await reply(sub, "cmd/ping/result")
    assert r["id"] == "p1" and r["ok"] is True and r["result"]["pong"] is True
    send(mosquitto, "cmd/status", {"id": "s1", "args": {}})
    (r,) = await reply(sub, "cmd/status/result")
    assert r["ok"] and r["result"]["gateway"] == "gw-test" and r["result"]["readers"][0]["id"] == "r1"
    send(mosquitto, "cmd/outbox-stats", {"id": "o1"})
    (r,) = await reply(sub, "cmd/outbox-stats/result")
    assert r["ok"] and "depth" in r["result"]


async def test_drain_readers_and_restart(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = ops
    send(mosquitto, "cmd/drain-readers", {"id": "d1", "args": {"action": "pause"}})
    (r,) = await reply(sub, "cmd/drain-readers/result")
    assert r["ok"] and r["result"]["readers"] == {"r1": "paused"}
    assert ra.agent["readers"].runners["r1"].state == "paused"
    send(mosquitto, "cmd/drain-readers", {"id": "d2", "args": {"action": "resume", "readers": ["r1"]}})
    await reply(sub, "cmd/drain-readers/result", 2)
    await wait_for(lambda: ra.agent["readers"].runners["r1"].state == "online", 10)
    send(mosquitto, "cmd/restart-reader", {"id": "x1", "args": {"reader": "r1"}})
    (r,) = await reply(sub, "cmd/restart-reader/result")
    assert r["ok"]
    await wait_for(lambda: ra.agent["readers"].runners["r1"].state == "online", 10)


async def test_resync_sends_the_backlog_again(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    _, sub, _ = ops
    send(mosquitto, "cmd/resync", {"id": "r1"})
    (r,) = await reply(sub, "cmd/resync/result")
    assert r["ok"] and "backlog" in r["result"]


@pytest.mark.parametrize(("topic", "payload", "error"), [
    ("cmd/reboot-the-world", {"id": "u1"}, "unknown command 'reboot-the-world'; known: drain-readers, kpis, outbox-stats, ping"),
    ("cmd/ping", b"{not json", "not JSON"),
    ("cmd/ping", {"args": {}}, "id: Field required"),
    ("cmd/ping", {"id": "a1", "args": {"x": 1}}, "bad args: x: Extra inputs are not permitted"),
    ("cmd/drain-readers", {"id": "a2", "args": {"action": "explode"}}, "bad args: action: String should match pattern"),
    ("cmd/drain-readers", {"id": "a3", "args": {"action": "pause", "readers": ["nope"]}}, "unknown reader(s): nope"),
    ("cmd/restart-reader", {"id": "a4", "args": {}}, "bad args: reader: Field required"),
    ("cmd/ping", b"x" * 70_000, "payload too large"),
])
async def test_bad_commands_get_an_error_reply(ops, mosquitto: Mosquitto, topic: str, payload: Any, error: str) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = ops
    send(mosquitto, topic, payload)
    name = topic.split("/", 1)[1]
    (r,) = await reply(sub, f"cmd/{name}/result")
    assert r["ok"] is False and error in r["error"], r
    if isinstance(payload, dict) and "id" in payload:
        assert r["id"] == payload["id"]
    assert not ra.task.done()


# -- config pushes ---------------------------------------------------------------------------

def push_doc(version: int, port: str, **extra: Any) -> dict[str, Any]:
    return {"version": version, "store": {"id": "test-store", "gateway": "gw-test"},
            "rfid": {"gone_after_s": 2.0, "readers": [
                {"id": "r1", "port": port, "protocol": "mercury", "baudrate": 115200, "zones": {"1": "z1"}}]},
            **extra}


async def test_valid_push_is_applied_reported_and_survives_restart(ops, mosquitto: Mosquitto, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra, sub, port = ops
    send(mosquitto, "config/set", push_doc(3, port))
    (r,) = await reply(sub, "config/reported")
    assert {k: r[k] for k in ("version", "status", "errors")} == {"version": 3, "status": "applied", "errors": []}
    assert r["running_version"] == 3 and r["rolled_back"] is False and r["config"]["rfid"]["gone_after_s"] == 2.0
    status = await ra.agent.status()
    assert status["config"]["version"] == 3 and status["config"]["last_push"]["status"] == "applied"
    assert ra.agent.config.rfid.gone_after_s == 2.0
    local = ra.agent.ctx.local_config
    await ra.stop()
    ra2 = await start_agent(local)
    assert ra2.agent.config.version == 3 and ra2.agent.config.rfid.gone_after_s == 2.0


async def test_unchanged_reader_keeps_running_across_a_push(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, port = ops
    runner = ra.agent["readers"].runners["r1"]
    doc = push_doc(2, port)
    doc["rfid"]["gone_after_s"] = 3.0  # same as before: nothing for the reader to restart for
    send(mosquitto, "config/set", doc)
    (r,) = await reply(sub, "config/reported")
    assert r["status"] == "applied"
    assert ra.agent["readers"].runners["r1"] is runner


@pytest.mark.parametrize(("payload", "path", "message"), [
    (b"not json at all", "", "not JSON"),
    (b"[1, 2]", "", "expected a JSON object"),
    ({"store": {"id": "test-store", "gateway": "gw-test"}}, "version", "is required in a push"),
    ({"version": "seven"}, "version", "input should be a valid integer"),
    ({"version": 5, "rfid": {"readers": [{"id": "r9", "port": "/dev/x", "protocol": "nfc"}]}},
     "rfid.readers[0].protocol", "must be one of"),
    ({"version": 5, "rfid": {"readers": [{"id": "r9", "protocol": "mercury"}]}}, "rfid.readers[0].port", "is required"),
    ({"version": 5, "rfid": {"gone_after_s": "soon"}}, "rfid.gone_after_s", "input should be a valid number"),
    ({"version": 5, "mqtt": {"host": "evil.example"}}, "mqtt.host", "set only in the local file"),
    ({"version": 5, "store": {"id": "other-store"}}, "store.id", "must stay 'test-store'"),
    ({"version": 0}, "version", "stale"),
    ({"version": 2**53}, "version", "less than or equal to 9007199254740991"),
    ({"version": 10**26}, "version", "less than or equal to 9007199254740991"),
])
async def test_bad_pushes_are_rejected_and_change_nothing(ops, mosquitto: Mosquitto, payload: Any, path: str,
                                                          message: str) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = ops
    before = ra.agent.config
    runner = ra.agent["readers"].runners["r1"]
    send(mosquitto, "config/set", payload)
    (r,) = await reply(sub, "config/reported")
    assert r["status"] == "rejected"
    assert any(e["path"] == path and message in e["message"] for e in r["errors"]), r["errors"]
    assert ra.agent.config is before and ra.agent["readers"].runners["r1"] is runner


async def test_ten_megabyte_push_is_rejected(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    _, sub, _ = ops
    send(mosquitto, "config/set", b'{"version": 9, "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}')
    (r,) = await reply(sub, "config/reported")
    assert r["status"] == "rejected" and "payload too large" in r["errors"][0]["message"]
    # the retained report still shows what runs: ops' dry runs and rollbacks diff against it
    assert r["running_version"] == 0 and r["config"]["rfid"]["readers"][0]["id"] == "r1"


async def test_numbers_past_64_bits_are_refused_or_carried_never_fatal(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    """A version of 10**26 once stopped the outbox writer and the MQTT side for good (orjson stops at 64 bits)."""
    ra, sub, _ = ops
    huge = 10**26
    for kind, doc in [("catalog", {**CATALOG, "version": huge}), ("members", {"version": huge, "members": []}),
                      ("qr", {"version": huge, "base_url": "https://go.example.com", "codes": []})]:
        send(mosquitto, f"{kind}/set", doc)
        (r,) = await reply(sub, f"{kind}/reported")
        assert r["status"] == "rejected" and r["version"] is None, r
        assert any(e["path"] == "version" and "less than or equal to 9007199254740991" in e["message"]
                   for e in r["errors"]), r
    send(mosquitto, "config/patch", {"version": huge})
    (r,) = await reply(sub, "config/reported")
    assert r["status"] == "rejected" and r["errors"][0]["path"] == "version" and ra.agent.config.version == 0
    # and a value this large inside an event is still recorded and sent, as JSON any reader can parse
    ra.agent.hub.publish(Event("test.big_number", "gw-test", {"n": huge}))
    await wait_for(lambda: any(e["kind"] == "test.big_number" for e in sent_events(sub)), 10)
    assert next(e for e in sent_events(sub) if e["kind"] == "test.big_number")["data"]["n"] == huge
    assert ra.agent["outbox"].status().ok and ra.agent.outbox.write_errors == 0
    send(mosquitto, "cmd/ping", {"id": "after"})
    (r,) = await reply(sub, "cmd/ping/result")
    assert r["ok"] is True


def sent_events(sub: Subscriber) -> list[dict[str, Any]]:
    return [e for p in sub.payloads(f"{BASE}/events") for e in json.loads(p)["events"]]


async def test_documents_no_component_takes_are_answered(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    """Every downlink message gets an answer on its kind's report topic; only the rejection of a whole kind this
    gateway does not run is retained, so the last real report stays what a late subscriber sees."""
    _, sub, _ = ops
    send(mosquitto, "catalog/set", CATALOG)
    (applied_report,) = await reply(sub, "catalog/reported")
    send(mosquitto, "catalog/cancel", {"version": 7})
    answers = await reply(sub, "catalog/reported", 2)
    assert answers[-1]["status"] == "rejected" and answers[-1]["version"] == 7
    assert answers[-1]["errors"][0]["message"] == "catalog takes catalog/set here, not catalog/cancel"
    send(mosquitto, "collect/set", {"version": 30})  # collect runs here, and takes add and cancel
    (r,) = await reply(sub, "collect/reported")
    assert r["version"] == 30 and r["errors"][0]["message"] == "collect takes collect/add, collect/cancel here, not collect/set"
    send(mosquitto, "foo/set", {"version": 3})
    (r,) = await reply(sub, "foo/reported")
    assert r["status"] == "rejected" and r["errors"][0]["message"] == "foo is not configured on this gateway"
    send(mosquitto, "bar/add", {})
    (r,) = await reply(sub, "bar/reported")
    assert r["version"] is None and r["errors"][0]["message"] == "bar is not configured on this gateway"
    late = Subscriber(mosquitto.port, f"{BASE}/+/reported")
    try:
        await wait_for(lambda: {f"{BASE}/catalog/reported", f"{BASE}/foo/reported"} <= {m.topic for m in late.messages},
                       10)
        assert json.loads(late.payloads(f"{BASE}/catalog/reported")[-1]) == applied_report
        assert json.loads(late.payloads(f"{BASE}/foo/reported")[-1])["version"] == 3  # a whole kind's set: retained
        assert not late.payloads(f"{BASE}/bar/reported") and not late.payloads(f"{BASE}/collect/reported")
    finally:
        late.close()


async def test_push_with_a_missing_reader_port_is_rolled_back(ops, mosquitto: Mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra, sub, port = ops
    doc = push_doc(4, port)
    doc["rfid"]["readers"].append({"id": "r2", "port": str(tmp_path / "no-such-tty"), "protocol": "em4100",
                                   "baudrate": 9600})
    send(mosquitto, "config/set", doc)
    (r,) = await reply(sub, "config/reported")
    assert r["status"] == "rejected" and r["rolled_back"] is True
    assert r["errors"][0]["path"] == "rfid.readers[1].port"
    assert "No such file or directory" in r["errors"][0]["message"]
    assert ra.agent.config.version == 0 and set(ra.agent["readers"].runners) == {"r1"}


async def test_signed_pushes(mosquitto: Mosquitto, tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    sub = Subscriber(mosquitto.port, f"{BASE}/config/reported")
    try:
        ra = await start_agent(make_config(tmp_path, mqtt=mqtt_section(mosquitto, config_public_key=public)))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        doc: dict[str, Any] = {"version": 1, "rfid": {"gone_after_s": 5.0}}
        send(mosquitto, "config/set", doc)  # unsigned
        other = Ed25519PrivateKey.generate()
        send(mosquitto, "config/set", {**doc, "signature": base64.b64encode(other.sign(canonical(doc))).decode()})
        send(mosquitto, "config/set", {**doc, "signature": "!!not base64"})
        tampered = {**doc, "signature": base64.b64encode(key.sign(canonical(doc))).decode(), "version": 2}
        send(mosquitto, "config/set", tampered)
        reports = await reply(sub, "config/reported", 4)
        assert [r["status"] for r in reports] == ["rejected"] * 4
        assert "unsigned push refused" in reports[0]["errors"][0]["message"]
        assert all(r["errors"][0]["message"] == "bad signature: refused" for r in reports[1:])
        good = {**doc, "signature": base64.b64encode(key.sign(canonical(doc))).decode()}
        send(mosquitto, "config/set", good)
        reports = await reply(sub, "config/reported", 5)
        assert {k: reports[-1][k] for k in ("version", "status", "errors")} == {
            "version": 1, "status": "applied", "errors": []}
        assert ra.agent.config.rfid.gone_after_s == 5.0
    finally:
        sub.close()


# -- catalog and sold items ------------------------------------------------------------------

CATALOG = {"version": 1, "currency": "EUR", "products": [
    {"gtin": "03012345000116", "name": "Trail running shoe", "price": "89.90"},
    {"gtin": "3012345000123", "name": "Merino T-shirt", "price": "35.00"},
]}


async def test_catalog_set_and_sold_add(ops, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = ops
    data = ra.agent["catalog"].data
    send(mosquitto, "catalog/set", CATALOG)
    (r,) = await reply(sub, "catalog/reported")
    assert r["status"] == "applied" and r["products"] == 2
    item = data.lookup("03012345000116")
    assert item is not None and str(item.price) == "89.90" and data.lookup("03012345000123") is not None
    send(mosquitto, "catalog/set", CATALOG)  # same version again
    reports = await reply(sub, "catalog/reported", 2)
    assert reports[-1]["status"] == "rejected" and "stale" in reports[-1]["errors"][0]["message"]
    bad = {"version": 2, "currency": "euro", "products": [{"gtin": "123", "name": "", "price": 1.5}]}
    send(mosquitto, "catalog/set", bad)
    reports = await reply(sub, "catalog/reported", 3)
    paths = {e["path"] for e in reports[-1]["errors"]}
    assert {"currency", "products[0].gtin", "products[0].name", "products[0].price"} <= paths
    assert data.catalog_version == 1

    send(mosquitto, "sold/add", {"epcs": ["3034b7dbe400070000000007"], "reason": "online-order"})
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("sold.added"), 10)
    assert data.is_sold("3034B7DBE400070000000007")
    assert not data.is_sold("3034B7DBE400070000000008")
    send(mosquitto, "sold/add", {"epcs": ["zz"], "reason": "x"})
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("sold.rejected"), 10)
    assert data.sold_count == 1
