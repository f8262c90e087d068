"""A feature of the daemon, plugged in with one registry line (agent/registry.py).

    Component        started and stopped by the lifecycle (agent/app.py), its `tasks()` supervised;
                     optionally: a typed status snapshot (its section of /api/status and its card on
                     the staff page), health reasons, Prometheus metrics, HTTP routes, MQTT commands
                     and documents (what central ops send down: catalog/set, members/set, …)
    Rule             a component that also takes the hub's events of the kinds it names, in order,
                     in memory (agent/rules/engine.py feeds every rule from one subscription)
    Context          what components share: the config in force, the hub, the outbox, each other

A component never reaches into another's attributes to act: it looks it up
by type (`ctx.get(Catalog)`) and calls its methods. Routes, commands and
documents are declared as values, so the web app, the OpenAPI document and
the downlink are built from them without naming any feature.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from agent.config import Config
from agent.errors import ConfigProblem
from agent.events import Event
from agent.hub import Hub

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from agent.outbox import Outbox
    from agent.web.routes import Route

__all__ = ["Command", "Component", "Context", "Document", "NoArgs", "Reason", "Rule"]

C = TypeVar("C", bound="Component")


@dataclass(frozen=True, slots=True)
class Reason:
    """One line of the health verdict, written for store staff."""

    level: Literal["red", "amber"]
    text: str


class NoArgs(BaseModel):
    """The args of a command that takes none (anything else is an error reply)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Command:
    """`cmd/{name}` over MQTT: validated args in, a JSON-able result out (ValueError -> an error reply)."""

    name: str
    args: type[BaseModel]
    handler: Callable[[Any], Awaitable[dict[str, Any]]]
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Document:
    """A document central ops send down on `{topic}`; the handler's report goes to `{reported}` (retained).

    The handler gets the raw payload and whether the broker delivered it as retained (a desired state
    seen again after a reconnect); it returns the report, or None when there is nothing to say.
    """

    topic: str
    handler: Callable[[bytes, bool], Awaitable[dict[str, Any] | None]]
    reported: str | None = None
    max_bytes: int = 1024 * 1024
    # The report for a payload refused before the handler sees it (too large), given its errors: a retained
    # report replaces the last one, so it must say as much (running version, running config) as the handler's.
    refused: Callable[[list[dict[str, str]]], dict[str, Any]] | None = None


class Component:
    """Defaults for every hook; a feature overrides what it has."""

    # Its section of /api/status, and the staff page card that draws it (agent/web/static/cards/{card}.js).
    key: ClassVar[str]
    status_model: ClassVar[type[BaseModel] | None] = None
    card: ClassVar[str | None] = None
    card_order: ClassVar[int] = 50  # where the card sits on the page, smaller first
    # The config sections it is built from: a push that changes one restarts it, unless apply() says done.
    sections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    def wanted(cls, config: Config) -> bool:
        """Whether this config asks for the component at all."""
        return True

    async def start(self) -> None:
        """Open what it needs; subscribe to the hub here, so no event published after start is missed."""

    async def connected(self) -> None:
        """The cloud link is (re)connected: say again what the cloud must know (a retained report)."""

    async def stopping(self) -> None:
        """Last words while its tasks still run (sync says "offline" on the retained state)."""

    async def stop(self) -> None:
        """Close what start opened (its tasks are already cancelled)."""

    async def check(self, new: Config) -> list[ConfigProblem]:
        """Problems `new` would cause here (a reader port that cannot be opened); nothing changes yet."""
        return []

    async def apply(self, old: Config, new: Config) -> bool:
        """Switch to `new` in place (ctx.config is already `new`); False: restart me instead (the default)."""
        return False

    def status(self) -> BaseModel | None:
        return None

    def health(self) -> Iterable[Reason]:
        return ()

    def metrics(self) -> Iterable[Metric]:
        return ()

    @classmethod
    def routes(cls) -> Iterable[Route]:
        """HTTP routes; each handler is an unbound method `(component, request)`. Declared per class, so the
        web app and the OpenAPI document have them whatever the config; a request to a component that is
        not running gets 404 "not configured"."""
        return ()

    def commands(self) -> Iterable[Command]:
        return ()

    def documents(self) -> Iterable[Document]:
        return ()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        """Long-running work, (name, coroutine function); the lifecycle supervises each (restart on crash)."""
        return ()


class Rule(Component):
    """A decision taken in memory on hub events (self-checkout, gate, offers, …)."""

    kinds: ClassVar[frozenset[str]] = frozenset()

    def on_event(self, event: Event) -> None:
        """Decide; publish what was decided on the hub. Must not block or await."""

    def next_due(self) -> float | None:
        """When (monotonic seconds) the rule's next timer is due, or None."""
        return None

    def tick(self, now: float) -> None:
        """Timers (settle times, dwell thresholds): called after each batch of events and when one is due."""


@dataclass
class Context:
    """What the components of one daemon share."""

    config: Config
    hub: Hub
    outbox: Outbox
    local_config: Config
    demo: bool = False
    config_path: Path | None = None
    components: dict[str, Component] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    # Set by the lifecycle: switch every component to a validated config (raises ConfigError, rolled back).
    reconfigure: Callable[[Config], Awaitable[None]] | None = None
    # Set by the lifecycle: the whole /api/status document.
    status: Callable[[], dict[str, Any]] | None = None
    # Called by the lifecycle, synchronously, whenever a component starts or stops (the rules engine's table).
    on_components_changed: list[Callable[[], None]] = field(default_factory=list)

    @property
    def storage_dir(self) -> Path:
        return self.config.storage.path.parent

    @property
    def gateway(self) -> str:
        return self.config.store.gateway

    def get(self, cls: type[C]) -> C | None:
        """The running component of type `cls`, or None."""
        for comp in self.components.values():
            if isinstance(comp, cls):
                return comp
        return None

    def require(self, cls: type[C]) -> C:
        comp = self.get(cls)
        if comp is None:
            raise LookupError(f"{cls.__name__} is not running")
        return comp

    def publish(self, kind: str, data: dict[str, Any], source: str | None = None) -> Event:
        event = Event(kind, source or self.gateway, data)
        self.hub.publish(event)
        return event
