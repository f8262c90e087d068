"""`ops push` against real gateways: signed pushes applied, bad files refused locally, a foreign key rejected by
every gateway, a gateway offline during the push catching up on restart, and the dry run."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.ops.keys import keygen
from tests.agent.ops.conftest import DOOR_READER, LOOP_READER, Result, TestFleet, wait_until

PUSH = """
[store]
id = "whatever"      # local-only: stripped, never sent
name = "Spring layout"
[storage]
path = "/nowhere"    # local-only too
[rfid]
gone_after_s = 2.5
[[rfid.readers]]
id = "floor"
port = "loop://"
protocol = "em4100"
baudrate = 9600
silence_timeout_s = 3600
"""


def write(tmp_path: Path, text: str, name: str = "push.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def three(fleet: TestFleet) -> TestFleet:
    for store, gateway in (("s1", "gw-a"), ("s1", "gw-b"), ("s2", "gw-c")):
        fleet.add(store, gateway)
    return fleet


def fleet_json(ops: Callable[..., Result]) -> dict[str, dict]:  # type: ignore[type-arg]
    r = ops("fleet", "--json")
    assert r.code == 0, r
    return {f"{g['store']}/{g['gateway']}": g for g in json.loads(r.out)}


def test_push_to_three_gateways_in_two_stores(three: TestFleet, ops: Callable[..., Result], keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = ops("push", write(tmp_path, PUSH), "--all", "--key", keys.private_path, "--wait", "15")
    assert r.code == 0, r
    assert "not sent (each gateway's local file owns them): storage, store.id" in r.out
    assert "pushing" in r.out and "as version 1 to 3 gateway(s)" in r.out
    for name in ("s1/gw-a", "s1/gw-b", "s2/gw-c"):
        assert any(line.split()[:5] == [name, "0", "->", "1", "applied"] for line in r.out.splitlines()), r.out
        kept = three.gateways[name].pushed()
        assert kept is not None and kept["version"] == 1
        assert kept["store"]["name"] == "Spring layout" and kept["rfid"]["gone_after_s"] == 2.5
        assert kept["store"]["id"] == name.split("/")[0]  # the gateway's own, not the file's
    sent = three.messages("o2o/v1/s1/gw-a/config/set")[-1]
    assert "storage" not in sent and "id" not in sent["store"] and sent["signature"]
    # The next push to one store goes above every version that store has seen.
    r = ops("push", write(tmp_path, PUSH.replace("2.5", "1.5")), "--store", "s1", "--key", keys.private_path)
    assert r.code == 0, r
    assert "as version 2 to 2 gateway(s)" in r.out
    assert three.gateways["s2/gw-c"].pushed()["version"] == 1  # type: ignore[index]
    fleet = fleet_json(ops)
    assert [fleet[n]["config_version"] for n in ("s1/gw-a", "s1/gw-b", "s2/gw-c")] == [2, 2, 1]


def test_invalid_config_is_refused_before_anything_is_sent(three: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    bad = PUSH.replace('protocol = "em4100"', 'protocol = "em4200"').replace("gone_after_s", "gone_afer_s")
    r = ops("push", write(tmp_path, bad), "--all", "--key", keys.private_path)
    assert r.code == 2, r
    assert r.out == ""
    assert "2 problem(s), nothing was sent" in r.err
    assert "rfid.gone_afer_s: unknown key" in r.err
    assert "rfid.readers[0].protocol: must be one of uhfreader18, mercury, r2000, em4100" in r.err
    time.sleep(0.5)
    assert not [m for m in three.watch.messages if m.topic.endswith("/config/set")]


def test_push_signed_with_another_key_is_rejected_by_every_gateway(three: TestFleet, ops: Callable[..., Result],  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    other = keygen(tmp_path / "other-keys")
    r = ops("push", write(tmp_path, PUSH), "--all", "--key", other.private_path, "--wait", "15")
    assert r.code == 1, r
    rows = [line for line in r.out.splitlines() if line.startswith(("s1/", "s2/"))]
    assert len(rows) == 3
    assert all("rejected" in row and "signature: bad signature: refused" in row for row in rows), r.out
    assert all(gw.pushed() is None for gw in three.gateways.values())


def test_gateway_offline_during_a_push_gets_it_when_it_starts(three: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    late = three.gateways["s2/gw-c"]
    late.stop(signal.SIGKILL)  # no goodbye: the broker publishes its will
    wait_until(lambda: fleet_json(ops)["s2/gw-c"]["state"] == "offline", what="the will")
    r = ops("fleet")
    assert r.out.splitlines()[2].startswith("s2/gw-c  offline"), r.out  # problems first
    assert "offline: connection lost (its will)" in r.out

    r = ops("push", write(tmp_path, PUSH), "--all", "--key", keys.private_path, "--wait", "15")
    assert r.code == 1, r  # not everything applied yet
    # its last config/reported (sent when it connected) says it ran version 0
    assert any(line.split()[:5] == ["s2/gw-c", "0", "->", "1", "offline"] for line in r.out.splitlines()), r.out
    assert "kept on the broker: applied when it reconnects" in r.out
    assert late.pushed() is None

    three.start(late)
    wait_until(lambda: late.pushed() is not None, what="the retained push applied on start")
    assert late.pushed()["version"] == 1  # type: ignore[index]
    gw = wait_until(lambda: (g := fleet_json(ops)["s2/gw-c"])["config_version"] == 1 and g, what="fleet view")
    assert gw["state"] == "online" and gw["problem"] is None
    row = next(line for line in ops("fleet").out.splitlines() if line.startswith("s2/gw-c"))
    assert row.split()[:2] == ["s2/gw-c", "online"] and row.split()[4] == "1", row


def test_dry_run_diffs_against_the_push_a_gateway_runs(three: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    assert ops("push", write(tmp_path, PUSH), "--store", "s1", "--key", keys.private_path).code == 0
    changed = PUSH.replace("2.5", "1.5").replace('name = "Spring layout"', "") + '[logging]\nlevel = "debug"\n'
    r = ops("push", write(tmp_path, changed, "next.toml"), "--all", "--dry-run")
    assert r.code == 0, r
    lines = r.out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("s1/gw-a"))
    # The base is the running config the gateway reports, or (from a gateway that does not) the push it runs:
    # both give the same diff.
    assert lines[head] in (
        "s1/gw-a (online): version 1 -> 2, compared with its reported running config: 3 change(s)",
        "s1/gw-a (online): version 1 -> 2, compared with config/set version 1, the push it runs: 3 change(s)"), r
    assert lines[head + 1:head + 4] == [
        '  ~ logging.level: "info" -> "debug"',
        "  ~ rfid.gone_after_s: 2.5 -> 1.5",
        '  ~ store.name: "Spring layout" -> ""',
    ]
    # A gateway that runs its local file and does not report it: no guessing.
    assert ("s2/gw-c (online): version 0 -> 2: cannot diff: it does not report its running config" in r.out
            or "s2/gw-c (online): version 0 -> 2, compared with its reported running config: 2 change(s)" in r.out)
    time.sleep(0.3)
    assert len([m for m in three.watch.messages if m.topic.endswith("/config/set")]) == 2  # the first push only


def test_a_push_that_removes_a_reader_must_name_it(fleet: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    gw = fleet.add("s1", "gw-a", LOOP_READER + DOOR_READER)
    both = write(tmp_path, LOOP_READER + DOOR_READER, "both.toml")
    assert ops("push", both, "--all", "--key", keys.private_path).code == 0
    floor_only = write(tmp_path, LOOP_READER, "floor.toml")
    r = ops("push", floor_only, "--all", "--dry-run")
    assert "  - rfid.readers[1]: " in r.out
    assert ("  ! it would refuse this push: it removes rfid.readers[door]; confirm with --remove 'rfid.readers[door]'"
            in r.out.splitlines()), r
    r = ops("push", floor_only, "--all", "--key", keys.private_path)
    assert r.code == 1 and "rfid.readers[door]: this push would remove it" in r.out, r
    r = ops("push", floor_only, "--all", "--dry-run", "--remove", "rfid.readers[door]")
    assert "  removes rfid.readers[door]: confirmed" in r.out.splitlines(), r
    r = ops("push", floor_only, "--all", "--key", keys.private_path, "--remove", "rfid.readers[door]")
    assert r.code == 0, r
    assert [reader["id"] for reader in gw.pushed()["rfid"]["readers"]] == ["floor"]  # type: ignore[index]
    assert ops("push", floor_only, "--all", "--remove", "readers!").code == 2


# -- what ops relies on from the gateway side (docs/ops.md, "What ops relies on from the gateways") --------


def test_dry_run_diffs_against_the_running_config_a_gateway_reports(three: TestFleet, ops: Callable[..., Result],  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    r = ops("push", write(tmp_path, PUSH), "--store", "s2", "--gateway", "gw-c", "--dry-run")
    assert "s2/gw-c (online): version 0 -> 1, compared with its reported running config: 2 change(s)" in r.out, r
    assert "  ~ rfid.gone_after_s: 3.0 -> 2.5" in r.out
    assert '  ~ store.name: "" -> "Spring layout"' in r.out


def test_applied_report_carries_the_running_version_and_config(three: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    assert ops("push", write(tmp_path, PUSH), "--all", "--key", keys.private_path).code == 0
    report = three.messages("o2o/v1/s1/gw-a/config/reported")[-1]
    assert report["status"] == "applied" and report["version"] == 1 and report["running_version"] == 1
    assert report["config"]["store"]["name"] == "Spring layout"
    assert "storage" not in report["config"] and "mqtt" not in report["config"]


def test_restarting_a_gateway_does_not_turn_its_report_into_a_rejection(three: TestFleet, ops: Callable[..., Result],  # type: ignore[no-untyped-def]
                                                                         keys, tmp_path: Path) -> None:
    assert ops("push", write(tmp_path, PUSH), "--all", "--key", keys.private_path).code == 0
    gw = three.gateways["s1/gw-a"]
    three.restart(gw)
    time.sleep(1.0)  # the retained push reaches it right after its birth
    assert three.messages(f"{gw.topic}/config/reported")[-1]["status"] == "applied"


def test_broker_restart_makes_no_gateway_re_report(three: TestFleet, ops: Callable[..., Result], keys,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    assert ops("push", write(tmp_path, PUSH), "--all", "--key", keys.private_path).code == 0

    def fresh_reports() -> list[dict]:  # type: ignore[type-arg]
        # Live reports only: a re-subscription also brings the retained ones again (retain flag set).
        # (a gateway says what it runs after every connect, "trigger": "connect": not a re-application)
        return [r for r in (json.loads(m.payload) for m in three.watch.messages
                            if m.topic.endswith("/config/reported") and not m.retain) if r.get("trigger") != "connect"]

    # ops saw every gateway applied; the watching client may not have yet (its own delivery): wait for it,
    # else a report still on its way is counted as one made after the restart
    wait_until(lambda: sum(r["status"] == "applied" for r in fresh_reports()) >= 3, 10, "the watch sees the reports")
    # and let the gateways have their reports' PUBACKs: one lost with the broker makes paho send that report
    # again after the reconnect (QoS 1's duplicate, seen once on a loaded machine), which is not a re-application
    time.sleep(1.0)
    before = len(fresh_reports())
    births_before = sum(three.births(gw) for gw in three.gateways.values())
    three.broker.stop()
    three.broker.start()
    wait_until(lambda: sum(three.births(gw) for gw in three.gateways.values()) >= births_before + 3, 20, "reconnects")
    time.sleep(1.0)
    assert fresh_reports()[before:] == []
