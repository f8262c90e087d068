"""Keeps long-running tasks alive: a crash is logged, counted and followed by a restart with backoff.

A driver bug must never take the daemon down; it must also never spin in a
tight crash loop, so restarts back off exponentially (with jitter so that
readers sharing a USB hub do not restart in lockstep), and the backoff resets
once a task has run cleanly for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from drivers.backoff import Backoff

__all__ = ["RestartPolicy", "supervise"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_s: float = 1.0
    maximum_s: float = 60.0
    # A task that ran this long before failing is considered healthy: start over at initial_s.
    healthy_after_s: float = 60.0
    jitter: float = 0.2  # each wait is shortened by up to this share


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    policy: RestartPolicy = RestartPolicy(),
    on_crash: Callable[[BaseException, int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `run()` until cancelled; restart it when it raises or returns unexpectedly."""
    backoff = Backoff(policy.initial_s, policy.maximum_s, jitter=policy.jitter, stable_s=policy.healthy_after_s)
    restarts = 0
    while True:
        started = clock()
        try:
            await run()
            error: BaseException = RuntimeError("task returned unexpectedly")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        backoff.succeeded(clock() - started)
        restarts += 1
        wait = backoff.next()
        log.error("%s crashed (%s: %s); restart #%d in %.1fs", name, type(error).__name__, error, restarts, wait,
                  exc_info=error)
        if on_crash is not None:
            on_crash(error, restarts, wait)
        await asyncio.sleep(wait)
