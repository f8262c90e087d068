"""scripts/fleet in small: the same run (scripts/fleetsim/scenario.py) with 50 light gateways and 2 real
`o2o-edge run` daemons on a real mosquitto, in about 20 s.

It pushes a config to all of them with `o2o-edge ops push --all` (a subprocess, as ops types it),
lists them with `ops fleet`, restarts the broker and waits for every gateway to reconnect (jittered
backoff), then checks that nothing was re-applied or rejected and that the run left no process behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scripts.fleetsim.procs import Mosquitto, group_pids
from scripts.fleetsim.scenario import Plan, run_scenario

pytestmark = pytest.mark.timeout(150)

TOTAL = 52


def test_a_small_fleet_applies_a_push_lists_in_ops_fleet_and_comes_back_after_a_broker_restart(tmp_path: Path) -> None:
    plan = Plan(total=TOTAL, real=2, workers=1, rate=5.0, ramp_s=1.0, steady_s=2.0, down_s=1.5, fleet_runs=1,
                online_timeout_s=60, back_timeout_s=60)
    broker = Mosquitto(tmp_path, conf_extra="max_queued_messages 10000\n")
    broker.start()
    lines: list[str] = []
    try:
        res = asyncio.run(run_scenario(plan, broker, tmp_path, lines.append))
    finally:
        broker.stop()
    log = "\n".join(lines + res.notes)
    assert res.real == 2 and res.light == TOTAL - 2
    # ops push --all: every gateway, real and light, verified the signature and reported applied
    assert res.push_exit == 0, res.push_output
    assert res.push_targets == TOTAL and res.push_applied == TOTAL and res.push_table_applied == TOTAL, log
    # ops fleet lists them all, online, on the pushed version, with the retained desired config seen
    assert (res.fleet_listed, res.fleet_online, res.fleet_on_version, res.fleet_desired) == (TOTAL,) * 4, log
    assert res.fleet_summary.startswith(f"{TOTAL} gateway(s) in {TOTAL // 2} store(s): {TOTAL} online"), log
    # the broker restart: every gateway reconnected by itself, and still runs the pushed version
    assert res.storm_back == TOTAL and res.storm_all_back_s is not None, log
    assert sum(res.storm_histogram) == TOTAL
    assert (res.after_storm_online, res.after_storm_on_version) == (TOTAL, TOTAL), log
    assert res.reapplied_after_storm == 0 and res.rejected == 0, log
    # events flowed to both members of the shared subscription
    assert res.ingest_events_per_s and res.ingest_events_per_s > 0.5 * plan.rate * res.light, log
    assert len(res.ingest_split) == 2 and all(n > 0 for n in res.ingest_split), res.ingest_split
    # nothing left running: every process group the run started is gone
    pgids = {int(x) for x in (tmp_path / "pgids").read_text().split()}
    assert len(pgids) >= 1 + 2 + 1  # the broker (twice), the real daemons, the light worker
    assert group_pids(pgids) == []
