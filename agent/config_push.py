"""Config pushed by central ops over MQTT: verify, validate, merge with the local file, persist.

A push is the whole config document as JSON with its `version`. When
`[mqtt] config_public_key` is set, it must also carry `signature`: the
base64 Ed25519 signature of the document's canonical form, i.e. the document
without its "signature" key, serialised as UTF-8 JSON with sorted keys and no
whitespace (`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`).
The gateway holds only the public key.

Precedence: the local file is the fallback and owns the keys that decide
where the gateway stores data and whom it talks to: `[storage]`, `[http]`,
`[mqtt]` and `store.id` / `store.gateway`. A push may leave them out; if it
sets them to anything else it is rejected. Everything else comes from the
push with the highest version, kept in `config-pushed.json` beside the
outbox so a reboot comes back with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

from agent.config import Config, parse_config
from agent.errors import ConfigError, ConfigProblem

__all__ = [
    "LOCAL_ONLY", "MAX_PUSH_BYTES", "SECRET_KEYS", "PushedConfigStore", "canonical", "effective_config", "masked_config",
    "verify_push",
]

log = logging.getLogger(__name__)

# A whole store config is a few KiB; a megabyte is an attack or a mistake.
MAX_PUSH_BYTES = 1024 * 1024
LOCAL_ONLY = ("storage", "http", "mqtt")
PUSHED_FILE = "config-pushed.json"
# Keys whose values never leave the gateway (diagnostics bundle, config/reported).
SECRET_KEYS = frozenset({"token", "api_token", "password", "password_hash", "faskey"})


def canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _problems(*items: tuple[str, str]) -> ConfigError:
    return ConfigError([ConfigProblem(p, m) for p, m in items], "config/set")


def verify_push(payload: bytes, local: Config, running: Config) -> Config:
    """Everything short of applying: size, JSON, signature, schema, local-only keys, version order."""
    if len(payload) > MAX_PUSH_BYTES:
        raise _problems(("", f"payload too large: {len(payload)} bytes (limit {MAX_PUSH_BYTES})"))
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problems(("", f"not JSON: {exc}")) from exc
    except RecursionError as exc:
        raise _problems(("", "JSON nested too deeply")) from exc
    if not isinstance(document, dict):
        raise _problems(("", "expected a JSON object (the whole config document)"))
    key = local.mqtt.config_public_key
    if key is not None:
        # Imported here: a gateway without a signing key never pays for cryptography's import.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        signature = document.get("signature")
        if not isinstance(signature, str):
            raise _problems(("signature", "unsigned push refused: this gateway requires signed config"))
        try:
            public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
            public.verify(base64.b64decode(signature, validate=True), canonical(document))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise _problems(("signature", "bad signature: refused")) from exc
    document.pop("signature", None)
    if "version" not in document:
        raise _problems(("version", "is required in a push"))
    problems: list[tuple[str, str]] = []
    for section in LOCAL_ONLY:
        if section in document and document[section] != _dump_secret_free(local, section):
            problems.append((section, "set only in the local file; leave it out of pushes"))
    store = document.get("store")
    if isinstance(store, dict):
        for key_ in ("id", "gateway"):
            if key_ in store and store[key_] != getattr(local.store, key_):
                problems.append((f"store.{key_}", f"must stay {getattr(local.store, key_)!r} (set in the local file)"))
    if problems:
        raise _problems(*problems)
    merged = dict(document)
    merged["store"] = {**(store if isinstance(store, dict) else {}), "id": local.store.id, "gateway": local.store.gateway}
    for section in LOCAL_ONLY:
        merged[section] = _raw_section(local, section)
    config = parse_config(merged, "config/set")
    if config.version <= running.version:
        raise _problems(("version", f"stale: version {config.version} is not newer than the running {running.version}"))
    return config


def _raw_section(config: Config, section: str) -> Any:
    value = getattr(config, section)
    dumped = value.model_dump(mode="python")
    return _unwrap_secrets(dumped)


def _dump_secret_free(config: Config, section: str) -> Any:
    """The section as it would look in a JSON push, for comparing with one."""
    return json.loads(json.dumps(_raw_section(config, section), default=str))


def _unwrap_secrets(value: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


class PushedConfigStore:
    """The last applied push, on disk next to the outbox; written atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / PUSHED_FILE

    def save(self, config: Config) -> None:
        doc = _unwrap_secrets(config.model_dump(mode="python", exclude=set(LOCAL_ONLY)))
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self, local: Config) -> Config | None:
        """The pushed config merged with the local file, if newer than it; None (and a log line) otherwise."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("config: cannot read %s, using the local file: %s", self.path, exc)
            return None
        try:
            doc = json.loads(raw)
            for section in LOCAL_ONLY:
                doc[section] = _raw_section(local, section)
            doc["store"] = {**doc.get("store", {}), "id": local.store.id, "gateway": local.store.gateway}
            config = parse_config(doc, str(self.path))
        except (json.JSONDecodeError, ConfigError, AttributeError, TypeError) as exc:
            log.error("config: ignoring %s, using the local file: %s", self.path, exc)
            return None
        if config.version <= local.version:
            return None
        return config


def effective_config(local: Config) -> Config:
    """What runs at start: a newer push kept on disk wins over the local file for the keys it may set."""
    pushed = PushedConfigStore(local.storage.path.parent).load(local)
    if pushed is not None:
        log.info("config: using pushed version %d over the local file's %d", pushed.version, local.version)
    return pushed or local


def masked_config(config: Config, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config as JSON with every secret replaced by "***" (and `exclude` sections left out)."""

    def mask(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v, key) for v in value]
        if key in SECRET_KEYS and value is not None:
            return "***"
        return value

    return mask(config.model_dump(mode="json", exclude=set(exclude)))  # type: ignore[no-any-return]
