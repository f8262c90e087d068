"""What the broker's retained topics say about every gateway (pure: messages in, views out).

Sources, all under o2o/v1/{store}/{gateway}/:

    state             birth {"online": true, "version", "config_version", "started_at", "health"?, "backlog"?},
                      will {"online": false}, clean stop {"online": false, "reason": "shutdown"}
    config/set        the desired config (retained by `ops push`): its version, and the previous
                      config a rollback restores
    {kind}/reported   the outcome of the last config, catalog, members, campaigns or qr document
    cmd/{name}/result answers to `ops cmd` (live only)

A zero-length retained message clears what was kept for its topic. Payloads
that are not JSON objects are counted in `garbled` and otherwise ignored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.ops.table import format_table
from agent.sync.topics import PREFIX

__all__ = ["Fleet", "Gateway", "GatewayKey", "format_age", "render_fleet"]

_PREFIX_PARTS = PREFIX.split("/")
# The NOTE column of `ops fleet` is cut here: one line per gateway, even for hundreds of them.
NOTE_WIDTH = 72


@dataclass(frozen=True, slots=True, order=True)
class GatewayKey:
    store: str
    gateway: str

    def __str__(self) -> str:
        return f"{self.store}/{self.gateway}"

    def topic(self, suffix: str) -> str:
        return f"{PREFIX}/{self.store}/{self.gateway}/{suffix}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Gateway:
    key: GatewayKey
    state: dict[str, Any] | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    desired_config: dict[str, Any] | None = None
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Wall-clock time this process saw `online` flip (only known while watching live).
    changed_at: float | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def online(self) -> bool | None:
        return None if self.state is None else self.state.get("online") is True

    @property
    def state_word(self) -> str:
        if self.state is None:
            return "unknown"
        if self.online:
            return "online"
        return "stopped" if self.state.get("reason") == "shutdown" else "offline"

    @property
    def since(self) -> float | None:
        """When it came online (birth's started_at) or went offline (as far as anyone can tell)."""
        if self.state is not None:
            stamp = self.state.get("started_at") if self.online else self.state.get("at")
            if isinstance(stamp, str):
                try:
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    pass
        return self.changed_at

    @property
    def software(self) -> str | None:
        value = (self.state or {}).get("version")
        return value if isinstance(value, str) else None

    @property
    def health(self) -> tuple[str | None, str | None]:
        health = (self.state or {}).get("health")
        if not isinstance(health, dict):
            return None, None
        level, summary = health.get("level"), health.get("summary")
        return (level if isinstance(level, str) else None), (summary if isinstance(summary, str) else None)

    @property
    def backlog(self) -> int | None:
        """Events waiting on the gateway: `backlog` as a number or {"events"|"depth": n, …}."""
        value = (self.state or {}).get("backlog")
        if isinstance(value, dict):
            value = value.get("events", value.get("depth"))
        return _int(value)

    # -- config ------------------------------------------------------------------------------

    @property
    def config_report(self) -> dict[str, Any] | None:
        return self.reports.get("config")

    @property
    def running_config_version(self) -> int | None:
        """The version it runs: the newest of its birth message and its last config report."""
        candidates = [_int((self.state or {}).get("config_version"))]
        report = self.config_report or {}
        candidates.append(_int(report.get("running_version")))
        if report.get("status") == "applied":
            candidates.append(_int(report.get("version")))
        known = [v for v in candidates if v is not None]
        return max(known) if known else None

    @property
    def desired_config_version(self) -> int | None:
        return _int((self.desired_config or {}).get("version"))

    @property
    def highest_config_version(self) -> int:
        """Every version this gateway runs, was offered or refused: a new push must be above all of them."""
        report = self.config_report or {}
        known = [self.running_config_version, self.desired_config_version, _int(report.get("version"))]
        return max([v for v in known if v is not None], default=0)

    @property
    def config_problem(self) -> str | None:
        """A rejected push newer than what runs, or a desired version not applied yet."""
        running = self.running_config_version or 0
        report = self.config_report or {}
        version = _int(report.get("version"))
        if report.get("status") == "rejected" and version is not None and version > running:
            return f"config {version} rejected: {format_errors(report.get('errors'))}"
        desired = self.desired_config_version
        if desired is not None and desired > running:
            return f"config {desired} pending"
        return None

    # -- verdict -----------------------------------------------------------------------------

    def problem(self) -> tuple[int, str]:
        """(rank, words): lower ranks are listed first; rank 9 is "nothing to look at"."""
        level, summary = self.health
        if self.state_word == "offline":
            return 0, "offline: connection lost (its will)"
        if self.state_word == "stopped":
            return 1, "stopped (clean shutdown)"
        if self.state_word == "unknown":
            return 2, "no state message: never connected since the broker's retained data began"
        if level == "red":
            return 3, f"red: {summary or 'no reason given'}"
        if (config := self.config_problem) is not None:
            return 4 if "rejected" in config else 5, config
        if level == "amber":
            return 6, f"amber: {summary or 'no reason given'}"
        return 9, summary or ""

    def to_json(self, now: float) -> dict[str, Any]:
        level, summary = self.health
        report = self.config_report or {}
        rank, words = self.problem()
        return {
            "store": self.key.store, "gateway": self.key.gateway, "state": self.state_word,
            "since": self.since, "software": self.software,
            "config_version": self.running_config_version, "config_desired": self.desired_config_version,
            "config_report": {k: report.get(k) for k in ("version", "status", "errors", "rolled_back")} if report else None,
            "backlog": self.backlog, "health": level, "health_summary": summary,
            "problem": words if rank < 9 else None,
        }


def format_errors(errors: Any, limit: int = 3) -> str:
    """[{"path", "message"}, …] -> 'path: message; path: message (+2 more)'."""
    if not isinstance(errors, list) or not errors:
        return "no reason given"
    parts = []
    for e in errors[:limit]:
        if isinstance(e, dict):
            path, message = e.get("path"), e.get("message")
            parts.append(f"{path}: {message}" if path else str(message))
        else:
            parts.append(str(e))
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def format_age(since: float | None, now: float) -> str:
    if since is None:
        return "?"
    seconds = max(0.0, now - since)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


class Fleet:
    def __init__(self) -> None:
        self.gateways: dict[GatewayKey, Gateway] = {}
        self.garbled = 0

    def get(self, key: GatewayKey) -> Gateway:
        gw = self.gateways.get(key)
        if gw is None:
            gw = self.gateways[key] = Gateway(key)
        return gw

    def apply(self, topic: str, payload: bytes, *, live: bool = False, now: float | None = None) -> GatewayKey | None:
        """Take one message; the gateway it was about, or None if the topic is not a gateway's."""
        parts = topic.split("/")
        if len(parts) < 5 or parts[:2] != _PREFIX_PARTS:
            return None
        key, rest = GatewayKey(parts[2], parts[3]), parts[4:]
        doc: dict[str, Any] | None = None
        if payload:
            try:
                loaded = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                loaded = None
            if not isinstance(loaded, dict):
                self.garbled += 1
                return None
            doc = loaded
        gw = self.get(key)
        if rest == ["state"]:
            was = gw.online
            gw.state = doc
            if live and gw.online != was:
                gw.changed_at = time.time() if now is None else now
        elif rest == ["config", "set"]:
            gw.desired_config = doc
        elif len(rest) == 2 and rest[1] == "reported":
            if doc is None:
                gw.reports.pop(rest[0], None)
            else:
                gw.reports[rest[0]] = doc
        elif len(rest) == 3 and rest[0] == "cmd" and rest[2] == "result" and doc is not None:
            gw.results.setdefault(rest[1], []).append(doc)
        return key

    def sorted(self) -> list[Gateway]:
        return sorted(self.gateways.values(), key=lambda g: (g.problem()[0], g.key))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_line(gateways: list[Gateway]) -> str:
    stores = len({g.key.store for g in gateways})
    words = {w: sum(1 for g in gateways if g.state_word == w) for w in ("online", "offline", "stopped", "unknown")}
    states = ", ".join(f"{n} {w}" for w, n in words.items() if n or w == "online")
    red = sum(1 for g in gateways if g.health[0] == "red")
    amber = sum(1 for g in gateways if g.health[0] == "amber")
    rejected = sum(1 for g in gateways if "rejected" in (g.config_problem or ""))
    return (f"{len(gateways)} gateway(s) in {stores} store(s): {states}; "
            f"health {red} red, {amber} amber; {rejected} config rejected")


def render_fleet(gateways: list[Gateway], now: float) -> list[str]:
    rows = []
    for g in gateways:
        running = g.running_config_version
        config = "-" if running is None else str(running)
        desired = g.desired_config_version
        if desired is not None and desired != running:
            config += f" (→{desired})"
        rank, words = g.problem()
        level = g.health[0]
        note = words if rank < 9 else (f"{level}: {words}" if level else "")
        backlog = g.backlog
        rows.append([str(g.key), f"{g.state_word} {format_age(g.since, now)}", g.software or "-", config,
                     "-" if backlog is None else f"{backlog:,}", _cut(note, NOTE_WIDTH)])
    return [summary_line(gateways), *format_table(["GATEWAY", "STATE", "SOFTWARE", "CONFIG", "BACKLOG", "NOTE"], rows)]
