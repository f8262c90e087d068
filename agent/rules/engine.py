"""Feeds every running rule from one hub subscription, in order, in memory.

The engine names no rule: it asks the running components which are `Rule`s,
subscribes to the kinds they want, hands each event to the rules that want
it, and wakes each rule when its next timer is due. A rule that raises is
logged (rate-limited) and counted, and the others carry on: one bad catalog
entry must not silence the exit gate or take the status page down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel

from agent.component import Component, Context, Reason, Rule
from agent.events import Event
from agent.hub import Subscription

__all__ = ["RulesEngine", "RulesStatus"]

log = logging.getLogger(__name__)

# Events waiting for the rules; a gate alarm must not wait behind a flood, so this is large but bounded.
QUEUE_MAX = 50_000
BATCH = 1000
# With no timer due, the engine still looks at its rules this often.
MAX_WAIT_S = 1.0
# A failing rule is logged at most once per this many seconds (every failure is counted).
ERROR_LOG_EVERY_S = 30.0
# The health line mentions a failing rule for this long after its last failure.
ERROR_SHOWN_S = 600.0


class RulesStatus(BaseModel):
    rules: list[str]
    events: int
    errors: dict[str, int]
    last_error: str | None


class RulesEngine(Component):
    key = "rules"
    status_model = RulesStatus

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        self._clock = clock
        self._rules: list[Rule] = []
        self._by_kind: dict[str, tuple[Rule, ...]] = {}
        self._sub: Subscription | None = None
        self._kinds: frozenset[str] = frozenset()
        self._changed = asyncio.Event()
        self.events = 0
        self.errors: dict[str, int] = {}
        self.last_error: str | None = None
        self._last_error_at = -ERROR_SHOWN_S
        self._last_log: dict[str, float] = {}

    async def start(self) -> None:
        self.ctx.on_components_changed.append(self.rebuild)
        self.rebuild()

    async def stop(self) -> None:
        if self.rebuild in self.ctx.on_components_changed:
            self.ctx.on_components_changed.remove(self.rebuild)
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def rebuild(self) -> None:
        """Synchronous, so no event published between a rule starting and this is missed."""
        self._rules = [c for c in self.ctx.components.values() if isinstance(c, Rule)]
        kinds = frozenset().union(*(r.kinds for r in self._rules))
        self._by_kind = {k: tuple(r for r in self._rules if k in r.kinds) for k in kinds}
        if kinds != self._kinds or self._sub is None or self._sub.closed:
            old, self._kinds = self._sub, kinds
            self._sub = self.ctx.hub.subscribe("rules", maxsize=QUEUE_MAX, kinds=kinds) if kinds else None
            if old is not None:
                for event in old.get_nowait_batch(len(old)):  # nothing queued for the old table is lost
                    self._dispatch(event)
                old.close()
        self._changed.set()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("rules", self._run)]

    async def _run(self) -> None:
        while True:
            sub = self._sub
            if sub is not None and sub.closed:  # the supervisor restarted us after a crash
                self.rebuild()
                sub = self._sub
            batch = sub.get_nowait_batch(BATCH) if sub is not None else []
            if not batch:
                batch = await self._wait_for_events(sub)
            for event in batch:
                self._dispatch(event)
            self._tick()

    async def _wait_for_events(self, sub: Subscription | None) -> list[Event]:
        """Until events arrive, a timer is due or the set of rules changes."""
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        getter = asyncio.ensure_future(sub.get_batch(BATCH)) if sub is not None else None
        waiters: set[asyncio.Future[Any]] = {changed} if getter is None else {changed, getter}
        try:
            await asyncio.wait(waiters, timeout=self._wait(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                if not w.done():
                    w.cancel()
        if getter is not None and getter.done() and not getter.cancelled():
            return getter.result()
        return []

    def _wait(self) -> float:
        now = self._clock()
        dues = [d for r in self._rules if isinstance(d := self._safe(r, r.next_due), float | int)]
        return max(0.0, min([MAX_WAIT_S, *(d - now for d in dues)]))

    def _dispatch(self, event: Event) -> None:
        self.events += 1
        for rule in self._by_kind.get(event.kind, ()):
            self._safe(rule, rule.on_event, event)

    def _tick(self) -> None:
        now = self._clock()
        for rule in self._rules:
            self._safe(rule, rule.tick, now)

    def _safe(self, rule: Rule, fn: Callable[..., object], *args: object) -> object:
        try:
            return fn(*args)
        except Exception as exc:  # one rule's bug must not stop the others
            name = rule.key
            self.errors[name] = self.errors.get(name, 0) + 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            now = self._last_error_at = self._clock()
            if now - self._last_log.get(name, -ERROR_LOG_EVERY_S) >= ERROR_LOG_EVERY_S:
                self._last_log[name] = now
                log.exception("rule %s failed (%d failure(s) so far); the other rules carry on", name,
                              self.errors[name])
            return None

    def status(self) -> RulesStatus:
        return RulesStatus(rules=[r.key for r in self._rules], events=self.events, errors=dict(self.errors),
                           last_error=self.last_error)

    def health(self) -> Iterable[Reason]:
        if self.errors and self._clock() - self._last_error_at < ERROR_SHOWN_S:
            yield Reason("amber", f"A store rule is failing ({self.last_error}): call support.")
