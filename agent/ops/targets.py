"""Which gateways a command is for, and how a staged rollout splits them (pure).

Targets: `--store S --gateway G` (one gateway, even one never seen: a push is
retained and waits for it), `--store S` (every gateway of that store seen on
the broker) or `--all` (every gateway seen). They come back sorted by store
and gateway, so waves are the same on every run.

Waves: `--waves 1,10%,100%` is cumulative: the first wave is 1 gateway, the
second brings the total to 10 % of the targets (rounded up), the third to
all. A step that adds nobody is skipped; targets beyond the last step are
left out of the rollout and said so.
"""

from __future__ import annotations

import math

from agent.ops.errors import UsageError
from agent.ops.fleet import Fleet, GatewayKey

__all__ = ["parse_waves", "plan_waves", "select_targets"]


def select_targets(fleet: Fleet, store: str | None, gateway: str | None, all_: bool) -> list[GatewayKey]:
    if all_ and (store or gateway):
        raise UsageError("give either --all or --store S [--gateway G], not both")
    if gateway and not store:
        raise UsageError("--gateway needs --store (a gateway id is unique only within its store)")
    if store and gateway:
        return [GatewayKey(store, gateway)]
    if store:
        keys = sorted(k for k in fleet.gateways if k.store == store)
        if not keys:
            raise UsageError(f"no gateway of store {store!r} has been seen on the broker (`o2o-edge ops fleet` lists them)")
        return keys
    if all_:
        keys = sorted(fleet.gateways)
        if not keys:
            raise UsageError("no gateway has been seen on the broker yet")
        return keys
    raise UsageError("say which gateways: --store S --gateway G, --store S, or --all")


def parse_waves(spec: str) -> list[tuple[int, bool]]:
    """'1,10%,100%' -> [(1, False), (10, True), (100, True)]: (amount, is_percentage)."""
    steps = []
    for item in (s.strip() for s in spec.split(",")):
        percent = item.endswith("%")
        number = item.removesuffix("%")
        if not number.isdigit() or int(number) < 1 or (percent and int(number) > 100):
            raise UsageError(f"--waves: {item!r} is neither a gateway count (1, 5, …) nor a percentage (10%, 100%)")
        steps.append((int(number), percent))
    return steps


def plan_waves(total: int, steps: list[tuple[int, bool]]) -> list[int]:
    """Wave sizes for `total` targets; their sum may fall short of `total` (the rest is left out)."""
    sizes: list[int] = []
    reached = 0
    for amount, percent in steps:
        goal = min(total, math.ceil(total * amount / 100) if percent else amount)
        if goal > reached:
            sizes.append(goal - reached)
            reached = goal
    return sizes
