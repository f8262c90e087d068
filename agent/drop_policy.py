"""What the outbox drops when it is over its cap: a pure function, rows in, rows to drop out.

Lowest priority first (raw telemetry, then operational events, then sales,
alarms and consents) and, within a priority, the oldest first, until at
least the excess is freed. The outbox feeds it candidates from the database
and deletes what it returns; the table of cases is in tests/agent/test_outbox.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LOW_WATER", "DropCandidate", "plan_drops"]

# Drop down to this fraction of the cap, so a full outbox does not drop on every commit.
LOW_WATER = 0.95


@dataclass(frozen=True, slots=True)
class DropCandidate:
    seq: int
    priority: int
    size: int


def plan_drops(candidates: Iterable[DropCandidate], excess: int) -> list[DropCandidate]:
    """Pick the rows to drop to free at least `excess` bytes: lowest priority, then oldest, first.

    Pure: the outbox feeds it candidates from the database and deletes what it returns.
    """
    if excess <= 0:
        return []
    chosen: list[DropCandidate] = []
    freed = 0
    for cand in sorted(candidates, key=lambda c: (c.priority, c.seq)):
        if freed >= excess:
            break
        chosen.append(cand)
        freed += cand.size
    return chosen
