"""The status document (`GET /api/status`, the `status` command, the diagnostics bundle), from the components.

Identity and uptime come from here; every other section is one component's
typed snapshot under its key (None for a component this config does not run),
and `health` ranks what every component says is wrong. The OpenAPI schema of
the document is generated from the same models (`status_model`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, create_model

from agent import __version__
from agent.component import Component, Context, Reason
from agent.health import Health, assess

__all__ = ["HubStatus", "build_status", "status_model"]

log = logging.getLogger(__name__)

# A component that cannot report is logged at most once per this many seconds.
FAILURE_LOG_EVERY_S = 60.0


class Subscriber(BaseModel):
    name: str
    depth: int
    maxsize: int
    dropped: int


class HubStatus(BaseModel):
    published: int
    subscribers: list[Subscriber]


def status_model(registry: Sequence[type[Component]]) -> type[BaseModel]:
    """The document's model: the core keys, then one optional section per registered component."""
    sections: dict[str, Any] = {cls.key: (cls.status_model | None, None)
                                for cls in registry if cls.status_model is not None}
    return create_model(
        "Status", store=(str, ...), gateway=(str, ...), version=(str, ...), uptime_s=(float, ...),
        started_at=(float, ...), pid=(int, ...), hub=(HubStatus, ...), health=(Health, ...), **sections)


def build_status(ctx: Context, registry: Sequence[type[Component]]) -> dict[str, Any]:
    cfg = ctx.config
    doc: dict[str, Any] = {
        "store": cfg.store.id,
        "gateway": cfg.store.gateway,
        "version": __version__,
        "uptime_s": round(time.monotonic() - ctx.started_monotonic, 1),
        "started_at": ctx.started_at,
        "pid": os.getpid(),
    }
    reasons: list[Reason] = []
    for cls in registry:
        comp = ctx.components.get(cls.key)
        if comp is None:
            if cls.status_model is not None:
                doc[cls.key] = None
            continue
        try:  # one component's bug must not take the status page (and /metrics, the watchdog) down
            if cls.status_model is not None:
                snapshot = comp.status()
                doc[cls.key] = snapshot.model_dump(mode="json") if snapshot is not None else None
            reasons.extend(comp.health())
        except Exception as exc:
            doc[cls.key] = None
            reasons.append(Reason("amber", f"Part of the gateway ({cls.key}) cannot report its state: call support."))
            _log_failure(cls.key, exc)
    hub = ctx.hub
    doc["hub"] = {"published": hub.published, "subscribers": [
        {"name": s.name, "depth": s.depth, "maxsize": s.maxsize, "dropped": s.dropped} for s in hub.stats()]}
    doc["health"] = assess(reasons).model_dump()
    return doc


_last_failure_log: dict[str, float] = {}


def _log_failure(key: str, exc: Exception) -> None:
    now = time.monotonic()
    if now - _last_failure_log.get(key, -FAILURE_LOG_EVERY_S) >= FAILURE_LOG_EVERY_S:
        _last_failure_log[key] = now
        log.error("status: the %s component failed to report (%s: %s)", key, type(exc).__name__, exc, exc_info=exc)
