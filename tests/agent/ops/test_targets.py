"""Targets and waves (pure)."""

from __future__ import annotations

import pytest

from agent.ops.errors import UsageError
from agent.ops.fleet import Fleet, GatewayKey
from agent.ops.targets import parse_waves, plan_waves, select_targets


@pytest.mark.parametrize(("total", "spec", "sizes"), [
    (4, "1,50%,100%", [1, 1, 2]),
    (20, "1,10%,100%", [1, 1, 18]),
    (500, "1,10%,100%", [1, 49, 450]),
    (4, "1,10%,100%", [1, 3]),  # 10 % of 4 rounds up to 1: that step adds nobody
    (1, "1,10%,100%", [1]),
    (10, "2,1,100%", [2, 8]),  # a step below the one before adds nobody either
    (10, "3", [3]),  # a canary only: the other 7 are left out
    (3, "5", [3]),
])
def test_plan_waves(total: int, spec: str, sizes: list[int]) -> None:
    assert plan_waves(total, parse_waves(spec)) == sizes


@pytest.mark.parametrize("spec", ["0", "1,,100%", "101%", "ten", "-1", "10%%"])
def test_bad_waves(spec: str) -> None:
    with pytest.raises(UsageError, match="--waves"):
        parse_waves(spec)


def test_select_targets() -> None:
    fleet = Fleet()
    for topic in ("o2o/v1/s2/gw-1/state", "o2o/v1/s1/gw-2/state", "o2o/v1/s1/gw-1/config/reported"):
        fleet.apply(topic, b'{"online": true}')
    assert select_targets(fleet, None, None, True) == [GatewayKey("s1", "gw-1"), GatewayKey("s1", "gw-2"),
                                                        GatewayKey("s2", "gw-1")]
    assert select_targets(fleet, "s1", None, False) == [GatewayKey("s1", "gw-1"), GatewayKey("s1", "gw-2")]
    assert select_targets(fleet, "s9", "gw-new", False) == [GatewayKey("s9", "gw-new")]  # a push waits for it
    for store, gateway, all_, message in ((None, None, False, "say which gateways"),
                                          (None, "gw-1", False, "--gateway needs --store"),
                                          ("s1", None, True, "either --all or --store"),
                                          ("s9", None, False, "no gateway of store 's9'")):
        with pytest.raises(UsageError, match=message):
            select_targets(fleet, store, gateway, all_)
    with pytest.raises(UsageError, match="no gateway has been seen"):
        select_targets(Fleet(), None, None, True)
