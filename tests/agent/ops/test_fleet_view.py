"""The fleet view from retained messages (pure): versions, problems first, one line per gateway."""

from __future__ import annotations

import json

from agent.ops.fleet import Fleet, GatewayKey, render_fleet

NOW = 1_800_000_000.0


def apply(fleet: Fleet, store: str, gateway: str, suffix: str, doc: object) -> None:
    fleet.apply(f"o2o/v1/{store}/{gateway}/{suffix}", json.dumps(doc).encode())


def test_running_and_highest_config_versions() -> None:
    fleet = Fleet()
    apply(fleet, "s", "g", "state", {"online": True, "config_version": 3})
    gw = fleet.get(GatewayKey("s", "g"))
    assert (gw.running_config_version, gw.highest_config_version, gw.config_problem) == (3, 3, None)
    apply(fleet, "s", "g", "config/reported", {"version": 5, "status": "applied", "errors": []})
    assert gw.running_config_version == 5  # the birth is older than the report
    apply(fleet, "s", "g", "config/set", {"version": 7})
    apply(fleet, "s", "g", "config/reported", {"version": 7, "status": "rejected", "running_version": 5,
                                               "errors": [{"path": "signature", "message": "bad signature: refused"}]})
    assert (gw.running_config_version, gw.highest_config_version) == (5, 7)
    assert gw.config_problem == "config 7 rejected: signature: bad signature: refused"
    # A restarted gateway refusing the retained push it already runs is not a problem.
    apply(fleet, "s", "g", "config/reported", {"version": 7, "status": "rejected", "running_version": 7, "errors": []})
    assert gw.config_problem is None
    fleet.apply("o2o/v1/s/g/config/reported", b"")  # a cleared retained message
    assert gw.config_report is None
    assert fleet.apply("o2o/v1/s/g/state", b"not json") is None and fleet.garbled == 1
    assert fleet.apply("elsewhere/s/g/state", b"{}") is None


def test_hundreds_of_gateways_one_line_each_problems_first() -> None:
    fleet = Fleet()
    for i in range(300):
        apply(fleet, f"store-{i // 3:03}", f"gw-{i % 3}", "state",
              {"online": True, "version": "0.1.0", "config_version": 2, "started_at": "2027-01-15T06:00:00.000Z",
               "backlog": {"events": i, "oldest_age_s": 1.0}, "health": {"level": "green", "summary": "Everything is working."}})
    apply(fleet, "store-050", "gw-1", "state", {"online": False, "gateway": "gw-1"})
    apply(fleet, "store-070", "gw-2", "state", {"online": False, "gateway": "gw-2", "reason": "shutdown"})
    apply(fleet, "store-010", "gw-0", "state", {"online": True, "version": "0.1.0", "config_version": 2,
                                                "health": {"level": "red", "summary": "No RFID reader is working: " + "x" * 200}})
    apply(fleet, "store-020", "gw-0", "config/reported", {"version": 3, "status": "rejected", "errors": [
        {"path": "rfid.readers[0].port", "message": "cannot open /dev/ttyUSB9"}]})
    apply(fleet, "store-030", "gw-0", "state", {"online": True, "version": "0.1.0", "config_version": 2,
                                                "health": {"level": "amber", "summary": "Reader door unplugged"}})
    lines = render_fleet(fleet.sorted(), NOW)
    assert lines[0] == "300 gateway(s) in 100 store(s): 298 online, 1 offline, 1 stopped; health 1 red, 1 amber; 1 config rejected"
    assert len(lines) == 302 and max(len(line) for line in lines) <= 140
    assert [line.split()[0] for line in lines[2:7]] == [
        "store-050/gw-1", "store-070/gw-2", "store-010/gw-0", "store-020/gw-0", "store-030/gw-0"]
    assert lines[4].endswith("…") and "red: No RFID reader is working" in lines[4]
    assert "config 3 rejected: rfid.readers[0].port: cannot open /dev/ttyUSB9" in lines[5]
    row = next(line for line in lines if line.startswith("store-099/gw-2"))
    assert row.split() == ["store-099/gw-2", "online", "2h", "0.1.0", "2", "299", "green:", "Everything", "is", "working."]
    assert json.loads(json.dumps(fleet.get(GatewayKey("store-099", "gw-2")).to_json(NOW)))["backlog"] == 299
