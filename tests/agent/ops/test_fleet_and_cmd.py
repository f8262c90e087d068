"""`ops fleet` and `ops cmd` against real gateways (and a scripted one where a real one cannot misbehave)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli import main
from tests.agent.ops.conftest import EXE, FakeGateway, Result, TestFleet, wait_until
from tests.conftest import Mosquitto


@pytest.fixture
def mixed(fleet: TestFleet) -> TestFleet:
    """Four gateways: one killed (its will), one stopped cleanly, two online."""
    for store, gateway in (("s1", "gw-a"), ("s1", "gw-b"), ("s2", "gw-c"), ("s2", "gw-d")):
        fleet.add(store, gateway)
    fleet.gateways["s2/gw-d"].stop(signal.SIGKILL)
    fleet.gateways["s1/gw-b"].stop()
    return fleet


def test_fleet_lists_every_gateway_problems_first(mixed: TestFleet, ops: Callable[..., Result]) -> None:
    wait_until(lambda: '"offline"' in ops("fleet", "--json").out, what="the will")
    r = ops("fleet")
    assert r.code == 0 and r.err == "", r  # the broker echoed the marker: no warning
    lines = r.out.splitlines()
    assert lines[0] == "4 gateway(s) in 2 store(s): 2 online, 1 offline, 1 stopped; health 0 red, 0 amber; 0 config rejected"
    assert lines[1].split() == ["GATEWAY", "STATE", "SOFTWARE", "CONFIG", "BACKLOG", "NOTE"]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["s2/gw-d", "offline"], ["s1/gw-b", "stopped"], ["s1/gw-a", "online"], ["s2/gw-c", "online"]]
    # what it reported before it vanished: its running config version (0), no backlog in a will
    assert lines[2].split()[2:] == ["?", "-", "0", "-", "offline:", "connection", "lost", "(its", "will)"]
    software, config, backlog = lines[4].split()[3:6]
    assert (software, config) == ("0.1.0", "0")
    assert backlog == "-" or backlog.replace(",", "").isdigit()  # "-" from a gateway that does not report it

    r = ops("fleet", "--json", "--store", "s1")
    rows = json.loads(r.out)
    assert [(g["gateway"], g["state"]) for g in rows] == [("gw-b", "stopped"), ("gw-a", "online")]
    assert rows[1]["software"] == "0.1.0" and rows[1]["config_version"] == 0 and rows[1]["problem"] is None
    assert isinstance(rows[1]["since"], float)


def test_fleet_watch_follows_a_gateway_going_offline_and_back(fleet: TestFleet, mosquitto: Mosquitto) -> None:
    gw = fleet.add("s1", "gw-a")
    watch = subprocess.Popen([EXE, "ops", "fleet", "--watch", "--port", str(mosquitto.port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watch.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def rows(state: str) -> list[str]:
        return [line for line in list(lines) if line.startswith(f"s1/gw-a  {state} ")]

    try:
        wait_until(lambda: rows("online"), what="the first listing")
        gw.stop(signal.SIGKILL)
        offline = wait_until(lambda: rows("offline"), what="the will in the listing")
        assert "?" not in offline[0].split()[2]  # it saw the change happen: it knows since when
        fleet.start(gw)
        wait_until(lambda: len(rows("online")) > 1, what="back online in the listing")
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(10)
    assert any(line.startswith("-- ") for line in lines)  # not a terminal: each listing under a time line
    assert watch.returncode == 130
    assert "Traceback" not in watch.stderr.read()  # type: ignore[union-attr]


def test_cmd_ping_status_and_errors(mixed: TestFleet, ops: Callable[..., Result]) -> None:
    r = ops("cmd", "ping", "--store", "s1", "--gateway", "gw-a")
    assert r.code == 0, r
    row = r.out.splitlines()[1].split(maxsplit=2)
    assert row[:2] == ["s1/gw-a", "ok"] and json.loads(row[2])["pong"] is True

    r = ops("cmd", "status", "--all", "--json")
    assert r.code == 1, r  # two of them are down
    results = {f"{x['store']}/{x['gateway']}": x for x in json.loads(r.out)}
    assert results["s1/gw-a"]["result"]["gateway"] == "gw-a" and results["s2/gw-c"]["status"] == "ok"
    assert results["s1/gw-b"] == {"store": "s1", "gateway": "gw-b", "status": "stopped",
                                  "error": "not sent: commands are not kept for offline gateways"}
    assert results["s2/gw-d"]["status"] in ("offline", "stopped")

    r = ops("cmd", "restart-reader", "--store", "s2", "--args", '{"reader": "nope"}')
    assert r.code == 1
    assert "s2/gw-c  error    unknown reader(s): nope; known: floor" in r.out
    assert "s2/gw-d" in r.out

    assert ops("cmd", "ping", "--all", "--args", "[1]").code == 2
    r = ops("cmd", "ping/#", "--all")
    assert r.code == 2 and "'ping/#' is not a command name" in r.err


def test_cmd_times_out_cleanly_on_a_gateway_that_does_not_answer(mosquitto: Mosquitto, ops: Callable[..., Result]) -> None:
    mute = FakeGateway(mosquitto, "s9", "gw-mute", lambda topic, doc: [])
    try:
        started = time.monotonic()
        r = ops("cmd", "ping", "--all", "--wait", "1")
        assert time.monotonic() - started < 5
    finally:
        mute.close()
    assert r.code == 1 and r.err == ""
    assert r.out.splitlines()[1].split(maxsplit=2) == ["s9/gw-mute", "no", "answer  no cmd/ping/result within 1 s"]
    assert mute.received[0][0] == "cmd/ping" and set(mute.received[0][1]) == {"id", "args"}


def test_fleet_shows_backlog_and_health(fleet: TestFleet, ops: Callable[..., Result]) -> None:
    from tests.agent.ops.conftest import DOOR_READER, LOOP_READER

    fleet.add("s1", "gw-a", LOOP_READER + DOOR_READER)  # the door reader is unplugged: amber
    gw = wait_until(lambda: (g := json.loads(ops("fleet", "--json").out)[0])["health"] and g, 10, "health")
    assert gw["health"] == "amber" and "door" in gw["health_summary"]
    assert isinstance(gw["backlog"], int)
    assert "amber: Reader door" in ops("fleet").out


def test_fleet_warns_when_the_broker_loses_retained_messages(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """mosquitto's queue limit drops retained messages past it (and our settle marker): say so, not a short list."""
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(broker.conf.read_text().replace("max_inflight_messages 0\nmax_queued_messages 0\n",
                                                           "max_inflight_messages 2\nmax_queued_messages 2\n"))
    broker.start()
    try:
        publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="births")
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for i in range(40):
            birth = {"online": True, "store": "s", "gateway": f"gw-{i:02}", "version": "fake", "config_version": 0}
            publisher.publish(f"o2o/v1/s/gw-{i:02}/state", json.dumps(birth), qos=1, retain=True).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
        capsys.readouterr()
        assert main(["ops", "fleet", "--port", str(broker.port), "--settle", "1"]) == 0
        captured = capsys.readouterr()
        seen = int(captured.out.split()[0])
        assert seen < 40, captured.out  # the broker really dropped some
        assert "did not echo our marker within 1 s" in captured.err
        assert f"going on with the {seen} gateway(s) seen so far" in captured.err
        assert "max_queued_messages" in captured.err
    finally:
        broker.stop()
