"""Exponential backoff with jitter: the one retry policy for ports, captures, the uplink and supervised tasks.

A device or a broker that is gone must be retried, but never in a tight loop
and never in lockstep with its neighbours (readers on one USB hub, a fleet of
gateways after a broker restart): each wait doubles up to a cap and is shortened
by a random share (`jitter`). After a run that lasted `stable_s`, the next
failure starts again from `initial`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    # Each wait is drawn from [delay * (1 - jitter), delay]: 0 for a fixed schedule, 0.5 for a fleet.
    jitter: float = 0.0
    # A run at least this long counts as healthy: `succeeded()` then starts over from `initial`.
    stable_s: float | None = None
    current: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter is a share in [0, 1)")

    def next(self) -> float:
        """The next wait, in seconds."""
        self.current = self.initial if self.current == 0 else min(self.current * 2, self.maximum)
        return self.current * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.current = 0.0

    def succeeded(self, ran_for_s: float) -> None:
        """Tell how long the last attempt ran before failing; a stable one resets the backoff."""
        if self.stable_s is not None and ran_for_s >= self.stable_s:
            self.reset()
