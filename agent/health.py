"""The one-line answer to "is everything working, and if not, what do I do?".

Each component says what is wrong in its own corner (`Component.health()`, as
`Reason`s written for store staff, not engineers); this module ranks them into
a level (green / amber / red), a summary line and the full list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from agent.component import Reason

__all__ = ["Health", "assess", "clock_time", "duration"]


class Health(BaseModel):
    level: Literal["green", "amber", "red"]
    summary: str
    reasons: list[str]


def clock_time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M") if ts else "?"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def assess(reasons: Iterable[Reason]) -> Health:
    """Red reasons first, then amber, each group in the order the components gave them."""
    found = list(reasons)
    red = [r.text for r in found if r.level == "red"]
    amber = [r.text for r in found if r.level == "amber"]
    level: Literal["green", "amber", "red"] = "red" if red else "amber" if amber else "green"
    ordered = red + amber or ["Everything is working."]
    return Health(level=level, summary=ordered[0], reasons=ordered)
