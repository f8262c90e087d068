"""Who is in the simulated fleet and the config each gateway runs.

Gateway i is `store-{i // 2 + 1:03d}/gw-{i % 2 + 1}`: two gateways per store, so a fleet of 500 is 250
stores. Every gateway, real or light, runs the same minimal config: its ids, storage in its own temp
directory, `[http] listen = "127.0.0.1:0"`, the broker, `config_public_key` and otherwise the schema's
defaults (reconnect backoff 1 s to 60 s, as shipped), i.e. an "empty" config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PUSH_TOML", "GatewaySpec", "fleet_specs", "minimal_document", "minimal_toml"]

# What `ops push --all` sends in the run: valid for every gateway (no readers to remove), a visible change.
PUSH_TOML = '[store]\nname = "Fleet of 500"\n\n[rfid]\ngone_after_s = 2.5\n'


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    index: int
    store: str
    gateway: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def key(self) -> str:
        return f"{self.store}/{self.gateway}"

    @property
    def client_id(self) -> str:
        """What the uplink connects as by default (agent/sync/uplink.py), so the broker's log names it."""
        return f"o2o-edge-{self.store}-{self.gateway}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "store": self.store, "gateway": self.gateway, "host": self.host,
                "port": self.port, "username": self.username, "password": self.password}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GatewaySpec:
        return cls(d["index"], d["store"], d["gateway"], d["host"], d["port"], d.get("username"), d.get("password"))


def fleet_specs(total: int, endpoints: list[tuple[str, int]], *, credentials: bool = False) -> list[GatewaySpec]:
    """`total` gateways; gateway i connects to endpoints[i % len(endpoints)] (a cluster: every store on both
    nodes). With `credentials`, each has a username `{store}.{gateway}` (a broker that wants one, like
    ejabberd; a JID's user part cannot hold the "/" of mosquitto.acl's identities)."""
    specs = []
    for i in range(total):
        store, gateway = f"store-{i // 2 + 1:03d}", f"gw-{i % 2 + 1}"
        host, port = endpoints[i % len(endpoints)]
        user = f"{store}.{gateway}" if credentials else None
        specs.append(GatewaySpec(i, store, gateway, host, port, user, "fleet" if credentials else None))
    return specs


def minimal_document(spec: GatewaySpec, storage_dir: Path, public_key: str) -> dict[str, Any]:
    mqtt: dict[str, Any] = {"host": spec.host, "port": spec.port, "config_public_key": public_key}
    if spec.username is not None:
        mqtt["username"] = spec.username
        mqtt["password"] = spec.password or ""
    return {
        "store": {"id": spec.store, "gateway": spec.gateway},
        "storage": {"path": str(storage_dir / "o2o-edge.db")},
        "http": {"listen": "127.0.0.1:0"},
        "mqtt": mqtt,
    }


def minimal_toml(doc: dict[str, Any]) -> str:
    """The document as a TOML file (tables of strings and numbers only: JSON quoting is valid TOML)."""
    lines = []
    for table, values in doc.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)
