"""Rollout records: what a push changed, and the config each gateway ran before it.

One JSON file per push in the state directory (`--state-dir`, default
`$XDG_STATE_HOME/o2o-edge-ops/rollouts/`, i.e. `~/.local/state/…`), written
before the first document leaves and updated after every wave, so a rollback
works even when the pushing terminal died mid-rollout. The files hold whole
configs, secrets included: the directory is 0700 and the files 0600.

    {"id", "created_at", "config_file", "version", "document", "waves": [["store/gw", …], …], "stopped",
     "targets": {"store/gw": {"old_version", "previous", "previous_source", "status", "detail"}},
     "rollback": {"at", "version", "targets": {"store/gw": {"status", "detail"}}} | null}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from agent.ops.errors import UsageError
from agent.ops.fleet import GatewayKey

__all__ = ["RolloutRecord", "default_state_dir"]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "o2o-edge-ops"


def _key(text: str) -> GatewayKey:
    store, _, gateway = text.partition("/")
    return GatewayKey(store, gateway)


class RolloutRecord:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, state_dir: Path, config_file: Path, document: dict[str, Any],
               previous: dict[GatewayKey, tuple[int | None, dict[str, Any] | None, str]]) -> RolloutRecord:
        """`document`: what the rollout pushes (with its version, unsigned)."""
        version = document["version"]
        folder = state_dir / "rollouts"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = folder / f"{stamp}-v{version}.json"
        n = 1
        while path.exists():
            n += 1
            path = folder / f"{stamp}-v{version}-{n}.json"
        data = {
            "id": path.stem, "created_at": time.time(), "config_file": str(config_file), "version": version,
            "document": document,
            "waves": [], "stopped": None, "rollback": None,
            "targets": {str(k): {"old_version": old, "previous": doc, "previous_source": source,
                                 "status": "untouched", "detail": ""}
                        for k, (old, doc, source) in previous.items()},
        }
        record = cls(path, data)
        record.save()
        return record

    @classmethod
    def load(cls, path: Path) -> RolloutRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read the rollout record {path}: {exc}") from exc
        return cls(path, data)

    @classmethod
    def latest(cls, state_dir: Path) -> RolloutRecord:
        files = sorted((state_dir / "rollouts").glob("*.json"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise UsageError(f"no rollout recorded in {state_dir / 'rollouts'}: nothing to roll back")
        return cls.load(files[-1])

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    # -- reading ---------------------------------------------------------------------------------

    def targets(self) -> list[GatewayKey]:
        return sorted(_key(k) for k in self.data["targets"])

    def status(self, key: GatewayKey) -> str:
        return str(self.data["targets"][str(key)]["status"])

    def previous(self, key: GatewayKey) -> tuple[dict[str, Any] | None, str]:
        entry = self.data["targets"][str(key)]
        return entry["previous"], str(entry["previous_source"])

    # -- writing ---------------------------------------------------------------------------------

    def wave(self, keys: list[GatewayKey]) -> None:
        self.data["waves"].append([str(k) for k in keys])
        self.save()

    def outcome(self, key: GatewayKey, status: str, detail: str) -> None:
        self.data["targets"][str(key)].update(status=status, detail=detail)

    def stop(self, reason: str | None) -> None:
        self.data["stopped"] = reason
        self.save()

    def rolled_back(self, version: int, results: dict[GatewayKey, tuple[str, str]]) -> None:
        self.data["rollback"] = {"at": time.time(), "version": version,
                                 "targets": {str(k): {"status": s, "detail": d} for k, (s, d) in results.items()}}
        self.save()
