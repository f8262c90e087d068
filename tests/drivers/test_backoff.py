"""The one retry policy: doubling to a cap, jitter only ever shortens a wait, a stable run starts over."""

from __future__ import annotations

import random

import pytest

from drivers.backoff import Backoff


def test_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_jitter_stays_within_its_share_and_below_the_delay() -> None:
    b = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(7))
    waits = [b.next() for _ in range(200)]
    delays = [1.0, 2.0, 4.0] + [8.0] * 197
    assert all(d * 0.5 <= w <= d for w, d in zip(waits, delays, strict=True))
    assert len({round(w, 6) for w in waits[3:]}) > 100  # spread, not lockstep


def test_only_a_stable_run_resets() -> None:
    b = Backoff(1.0, 60.0, stable_s=30.0)
    b.next(), b.next(), b.next()
    b.succeeded(5.0)
    assert b.next() == 8.0  # a short run keeps backing off
    b.succeeded(30.0)
    assert b.next() == 1.0


@pytest.mark.parametrize(("initial", "maximum", "jitter"), [(0, 1, 0), (2, 1, 0), (1, 2, 1.0), (1, 2, -0.1)])
def test_nonsense_is_refused(initial: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, jitter=jitter)
