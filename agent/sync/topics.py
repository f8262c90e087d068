"""The MQTT topic contract: everything under o2o/v1/{store}/{gateway}/."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topics"]

PREFIX = "o2o/v1"


@dataclass(frozen=True, slots=True)
class Topics:
    store: str
    gateway: str

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.store}/{self.gateway}"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def cmd_result(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/result"

    @property
    def downlink(self) -> list[str]:
        """What the gateway subscribes to: every document verb and every command (never its own reports)."""
        return [f"{self.base}/{pattern}" for pattern in ("+/set", "+/patch", "+/add", "+/cancel", "cmd/+")]

    def suffix(self, topic: str) -> str | None:
        """'o2o/v1/s/g/catalog/set' -> 'catalog/set'; None for another gateway's topic."""
        prefix = f"{self.base}/"
        return topic[len(prefix):] if topic.startswith(prefix) else None

    def command_name(self, topic: str) -> str | None:
        """'…/cmd/ping' -> 'ping'; None for anything else (including '…/cmd/ping/result')."""
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None
