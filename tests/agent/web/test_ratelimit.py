"""The one rate limiter: a sliding window per key, bounded, and a flood cannot unblock a blocked key."""

from __future__ import annotations

from agent.web.ratelimit import RateLimiter


def test_sliding_window() -> None:
    now = [0.0]
    rl = RateLimiter(3, 60.0, clock=lambda: now[0])
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rl.refused == 1 and rl.blocked("a") and not rl.blocked("b")
    now[0] = 30.0
    assert not rl.allow("a")
    now[0] = 60.5  # the first three hits left the window
    assert rl.allow("a") and not rl.blocked("a")


def test_forget_and_record() -> None:
    rl = RateLimiter(2, 10.0)
    rl.record("x"), rl.record("x")
    assert rl.blocked("x")
    rl.forget("x")
    assert not rl.blocked("x")


def test_a_flood_of_new_addresses_does_not_unblock_a_blocked_one() -> None:
    now = [0.0]
    rl = RateLimiter(5, 300.0, max_keys=100, clock=lambda: now[0])
    for _ in range(5):
        rl.record("10.0.0.66")  # the real attacker, blocked
    for i in range(10_000):  # then thousands of other addresses, each failing once
        now[0] += 0.001
        rl.record(f"fd00::{i:x}")
    assert len(rl) <= 100 and rl.evicted >= 9_900
    assert rl.blocked("10.0.0.66")


def test_expired_keys_go_first() -> None:
    now = [0.0]
    rl = RateLimiter(1, 10.0, max_keys=3, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        rl.record(key)  # all three blocked
    now[0] = 11.0  # their windows are over
    rl.record("d")
    assert len(rl) == 1 and rl.blocked("d")


def test_when_everything_is_blocked_the_oldest_goes() -> None:
    rl = RateLimiter(1, 100.0, max_keys=2)
    rl.record("a"), rl.record("b"), rl.record("c")
    assert not rl.blocked("a") and rl.blocked("b") and rl.blocked("c")
