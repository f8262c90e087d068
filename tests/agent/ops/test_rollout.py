"""Staged rollouts against real gateways: stop at the first rejection or unhealthy gateway, leave later waves alone,
and roll back to the configs the rollout replaced."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.ops.conftest import (
    DOOR_READER,
    EXE,
    LOOP_READER,
    MISSING_PORT,
    Result,
    TestFleet,
    wait_until,
)


def doc(name: str, *readers: str) -> str:
    return f'[store]\nname = "{name}"\n' + "".join(readers)


def table(out: str) -> dict[str, list[str]]:
    """The rows of a result table by gateway (the last table in `out` wins)."""
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("s1/", "s2/"))}


@pytest.fixture
def four(fleet: TestFleet, ops: Callable[..., Result], keys, tmp_path: Path) -> TestFleet:  # type: ignore[no-untyped-def]
    """s1/gw-a, s2/gw-c, s2/gw-d have a door reader (unplugged: it runs offline) besides the floor one; s1/gw-b has
    only the floor reader. Each runs a first push (version 1) of what its file says."""
    with_door, floor_only = tmp_path / "with-door.toml", tmp_path / "floor-only.toml"
    with_door.write_text(doc("base", LOOP_READER, DOOR_READER))
    floor_only.write_text(doc("base", LOOP_READER))
    for store, gateway in (("s1", "gw-a"), ("s1", "gw-b"), ("s2", "gw-c"), ("s2", "gw-d")):
        fleet.add(store, gateway, LOOP_READER if gateway == "gw-b" else LOOP_READER + DOOR_READER)
    for args in (("--store", "s1", "--gateway", "gw-a"), ("--store", "s2")):
        assert ops("push", with_door, *args, "--key", keys.private_path).code == 0
    assert ops("push", floor_only, "--store", "s1", "--gateway", "gw-b", "--key", keys.private_path).code == 0
    return fleet


def test_rollout_stops_at_the_gateway_that_rejects_and_rolls_back(four: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    v2 = tmp_path / "v2.toml"
    v2.write_text(doc("v2", LOOP_READER, DOOR_READER))  # the door reader everywhere: s1/gw-b has no such port
    r = ops("push", v2, "--all", "--key", keys.private_path, "--waves", "1,50%,100%", "--soak", "1", "--rollback",
            "--wait", "15")
    assert r.code == 1, r
    lines = r.out.splitlines()
    assert lines[:4] == [
        "pushing " + str(v2) + " as version 2 to 4 gateway(s) in 3 wave(s)",
        "wave 1/3: s1/gw-a",
        "  soaking 1 s: 1 gateway(s) must stay online and not red",
        "wave 2/3: s1/gw-b",
    ]
    assert "rollout stopped at wave 2: s1/gw-b rejected" in lines
    result = r.out[:r.out.index("rolling back:")]
    rows = table(result)
    assert rows["s1/gw-a"][1:5] == ["1", "->", "2", "applied"]
    assert rows["s1/gw-b"][1:5] == ["1", "->", "2", "rejected"]
    assert f"rfid.readers[1].port: cannot open {MISSING_PORT}" in result and "(tried, rolled back)" in result
    assert rows["s2/gw-c"][1:3] == ["1", "untouched"] and rows["s2/gw-d"][1:3] == ["1", "untouched"]
    assert "not pushed: the rollout stopped" in result

    rolled = table(r.out[r.out.index("rolling back:"):])
    assert rolled["s1/gw-a"][1:5] == ["2", "->", "3", "applied"]
    assert rolled["s1/gw-b"][1:5] == ["1", "->", "3", "applied"]  # its desired state is its old config again
    assert set(rolled) == {"s1/gw-a", "s1/gw-b"}
    restored = four.gateways["s1/gw-a"].pushed()
    assert restored is not None and restored["version"] == 3 and restored["store"]["name"] == "base"
    assert [r["id"] for r in restored["rfid"]["readers"]] == ["floor", "door"]
    for name in ("s2/gw-c", "s2/gw-d"):  # third wave: not a single message
        assert four.gateways[name].pushed()["version"] == 1  # type: ignore[index]
        assert [d["version"] for d in four.messages(f"o2o/v1/{name}/config/set")] == [1]

    record_path = Path(next(line for line in lines if line.startswith("rollout record: ")).split(": ", 1)[1])
    record = json.loads(record_path.read_text())
    assert record["stopped"] == "wave 2: s1/gw-b rejected"
    assert record["targets"]["s1/gw-a"]["previous_source"] == "config/set version 1, the push it runs"
    assert record["rollback"]["version"] == 3
    assert oct(record_path.stat().st_mode & 0o777) == "0o600"


def test_ops_rollback_restores_the_last_recorded_rollout(four: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    v2 = tmp_path / "v2.toml"  # adds a reader: the rollback must confirm taking it away
    v2.write_text(doc("v2", LOOP_READER, DOOR_READER, LOOP_READER.replace('"floor"', '"aux"')))
    assert ops("push", v2, "--store", "s2", "--key", keys.private_path).code == 0
    assert four.gateways["s2/gw-c"].pushed()["store"]["name"] == "v2"  # type: ignore[index]
    r = ops("rollback", "--key", keys.private_path)
    assert r.code == 0, r
    assert r.out.startswith("rolling back ") and "(version 2 of " in r.out
    rows = table(r.out)
    assert set(rows) == {"s2/gw-c", "s2/gw-d"}
    assert all(row[1:5] == ["2", "->", "3", "applied"] for row in rows.values())
    assert four.gateways["s2/gw-d"].pushed()["store"]["name"] == "base"  # type: ignore[index]
    assert [r["id"] for r in four.gateways["s2/gw-d"].pushed()["rfid"]["readers"]] == ["floor", "door"]  # type: ignore[index]
    assert four.messages("o2o/v1/s2/gw-d/config/set")[-1]["remove"] == ["rfid.readers[aux]"]


def test_rollout_stops_when_a_gateway_goes_offline_while_soaking(fleet: TestFleet, mosquitto, keys,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    for store, gateway in (("s1", "gw-a"), ("s1", "gw-b"), ("s2", "gw-c")):
        fleet.add(store, gateway)
    v1 = tmp_path / "v1.toml"
    v1.write_text(doc("v1", LOOP_READER))
    cli = subprocess.Popen([EXE, "ops", "push", str(v1), "--all", "--port", str(mosquitto.port), "--key",
                            str(keys.private_path), "--waves", "1,100%", "--soak", "30",
                            "--state-dir", str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = fleet.gateways["s1/gw-a"]
    wait_until(lambda: first.pushed() is not None, what="wave 1 applied")
    first.stop()  # a clean stop: {"online": false, "reason": "shutdown"}
    out, err = cli.communicate(timeout=20)
    assert cli.returncode == 1, (out, err)
    text = out.decode()
    assert "rollout stopped at wave 1, soak: s1/gw-a stopped" in text
    rows = table(text)
    assert rows["s1/gw-a"][4] == "unhealthy"
    assert rows["s1/gw-b"][2] == "untouched" and rows["s2/gw-c"][2] == "untouched"
    assert fleet.gateways["s1/gw-b"].pushed() is None


def test_rollout_stops_at_a_gateway_whose_health_is_red(fleet: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    for gateway in ("gw-a", "gw-b"):  # the only reader is unplugged: "No RFID reader is working" is red
        fleet.add("s1", gateway, DOOR_READER)
    v1 = tmp_path / "v1.toml"
    v1.write_text(doc("v1", DOOR_READER))  # the same reader: applies fine, stays red

    def health(gateway: str) -> str | None:
        return next(g["health"] for g in json.loads(ops("fleet", "--json").out) if g["gateway"] == gateway)

    wait_until(lambda: health("gw-a") == "red", 30, "gw-a red")
    r = ops("push", v1, "--all", "--key", keys.private_path, "--waves", "1,100%", "--soak", "3")
    assert r.code == 1, r
    assert "rollout stopped at wave 1, soak: s1/gw-a health red: No RFID reader is working" in r.out
    assert table(r.out)["s1/gw-b"][2] == "untouched"


def test_waves_beyond_the_targets_and_a_canary_only_rollout(fleet: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    for gateway in ("gw-a", "gw-b", "gw-c"):
        fleet.add("s1", gateway)
    v1 = tmp_path / "v1.toml"
    v1.write_text(doc("v1", LOOP_READER))
    r = ops("push", v1, "--all", "--key", keys.private_path, "--waves", "1")
    assert r.code == 0, r
    rows = table(r.out)
    assert rows["s1/gw-a"][4] == "applied"
    assert rows["s1/gw-b"][2:] == ["untouched", "not", "pushed:", "beyond", "the", "last", "wave"]
    r = ops("push", v1, "--all", "--key", keys.private_path, "--waves", "0,100%")
    assert r.code == 2 and "--waves: '0' is neither a gateway count" in r.err
