"""Config pushed by central ops over MQTT: verify, validate, merge with the local file, persist.

Two documents, both carrying `version` (above the running one) and, when
`[mqtt] config_public_key` is set, `signature`: the base64 Ed25519 signature
of the document's canonical form, i.e. the document without its "signature"
key, serialised as UTF-8 JSON with sorted keys and no whitespace
(`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`).
The gateway holds only the public key.

    config/set     the whole config document, exactly what a local file holds, as JSON
    config/patch   an RFC 7396 JSON merge patch against the running config (agent/config_patch.py)

What a push may not do by accident: remove readers, stations, gates, beacons
or a whole section. A push that would is rejected with the list of what it
would remove (agent/config_removals.py), unless its `"remove"` list names
them (`"remove": ["rfid.readers[checkout-2]"]`); a patch's nulls name
themselves. A secret given as "***" (as config/reported and the diagnostics
bundle mask them) keeps the running value, so "take the running config, bump
the version, push it back" works.

Precedence: the local file is the fallback and owns the keys that decide
where the gateway stores data and whom it talks to: `[storage]`, `[http]`,
`[mqtt]` and `store.id` / `store.gateway`. A push may leave them out or
repeat them unchanged (they are then ignored); one that sets them to anything
else is rejected with the key paths that differ. Everything else comes from
the push with the highest version, kept in `config-pushed.json` beside the
outbox so a reboot comes back with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agent.config import Config, format_loc, parse_config
from agent.config_patch import merge_patch, null_paths
from agent.config_removals import REMOVAL_NAME, confirmed, removals
from agent.errors import ConfigError, ConfigProblem

__all__ = [
    "LOCAL_ONLY", "MASK", "MAX_PUSH_BYTES", "SECRET_KEYS", "PushedConfigStore", "canonical", "effective_config",
    "masked_config", "plain_document", "verify_push",
]

log = logging.getLogger(__name__)

# A whole store config is a few KiB; a megabyte is an attack or a mistake.
MAX_PUSH_BYTES = 1024 * 1024
LOCAL_ONLY = ("storage", "http", "mqtt")
PUSHED_FILE = "config-pushed.json"
# Keys whose values never leave the gateway (diagnostics bundle, config/reported).
SECRET_KEYS = frozenset({"token", "api_token", "password", "password_hash", "faskey"})
# What a secret looks like once masked; pushed back, it means "keep the running value".
MASK = "***"
# Removals are listed one per report line; a push that drops a thousand beacons is told about the first ones.
MAX_REMOVALS_REPORTED = 50
_LOCAL_ONLY_MESSAGE = "set only in the local file: leave it out of pushes, or repeat it unchanged"


def canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _problems(source: str, *items: tuple[str, str]) -> ConfigError:
    return ConfigError([ConfigProblem(p, m) for p, m in items], source)


def _load(payload: bytes, source: str) -> dict[str, Any]:
    if len(payload) > MAX_PUSH_BYTES:
        raise _problems(source, ("", f"payload too large: {len(payload)} bytes (limit {MAX_PUSH_BYTES})"))
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problems(source, ("", f"not JSON: {exc}")) from exc
    except RecursionError as exc:
        raise _problems(source, ("", "JSON nested too deeply")) from exc
    if not isinstance(document, dict):
        raise _problems(source, ("", "expected a JSON object (the whole config document)"))
    return document


def _check_signature(document: dict[str, Any], public_key: str | None, source: str) -> None:
    if public_key is None:
        return
    # Imported here: a gateway without a signing key never pays for cryptography's import.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature = document.get("signature")
    if not isinstance(signature, str):
        raise _problems(source, ("signature", "unsigned push refused: this gateway requires signed config"))
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        public.verify(base64.b64decode(signature, validate=True), canonical(document))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise _problems(source, ("signature", "bad signature: refused")) from exc


def _removal_names(value: Any, source: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problems(source, ("remove", 'expected a list of key paths, e.g. ["rfid.readers[checkout-2]"]'))
    bad = [v for v in value if not REMOVAL_NAME.match(v)]
    if bad:
        raise _problems(source, *((f"remove[{value.index(v)}]", f"not a key path: {v[:80]!r}") for v in bad))
    return list(value)


def verify_push(payload: bytes, local: Config, running: Config, *, kind: Literal["set", "patch"] = "set") -> Config:
    """Everything short of applying: size, JSON, signature, schema, local-only keys, version order, removals."""
    source = f"config/{kind}"
    document = _load(payload, source)
    _check_signature(document, local.mqtt.config_public_key, source)
    document.pop("signature", None)
    if "version" not in document:
        raise _problems(source, ("version", "is required in a push"))
    named = _removal_names(document.pop("remove", []), source)
    current = plain_document(running)
    if kind == "patch":
        named += null_paths(document)
        document = merge_patch(current, document)
    problems = _restore_masked(document, current)
    problems += _local_only_problems(document, local)
    if problems:
        raise _problems(source, *problems)
    merged = dict(document)
    store = document.get("store")
    merged["store"] = {**(store if isinstance(store, dict) else {}), "id": local.store.id, "gateway": local.store.gateway}
    for section in LOCAL_ONLY:
        merged[section] = _raw_section(local, section)
    config = parse_config(merged, source)
    if config.version <= running.version:
        raise _problems(source, ("version", f"stale: version {config.version} is not newer than the running "
                                            f"{running.version}"))
    omitted = {name for name in Config.model_fields if name not in document}
    unconfirmed = [r for r in removals(running, config, omitted=omitted) if not confirmed(r, named)]
    if unconfirmed:
        raise _problems(source, *((r, f'this push would remove it: name "{r}" in "remove" to confirm')
                                  for r in unconfirmed[:MAX_REMOVALS_REPORTED]))
    return config


def plain_document(config: Config) -> dict[str, Any]:
    """The config as a JSON document (what a push holds), secrets in clear: the base a patch applies to."""
    return json.loads(json.dumps(_unwrap_secrets(config.model_dump(mode="python")), default=str))  # type: ignore[no-any-return]


def _restore_masked(document: Any, current: Any, path: str = "") -> list[tuple[str, str]]:
    """Put the running value back wherever a secret is given as "***" (in place); problems where there is none.
    Items of lists are matched by id when they have one, else by position."""
    problems: list[tuple[str, str]] = []
    if isinstance(document, dict):
        old = current if isinstance(current, dict) else {}
        for key, value in document.items():
            where = f"{path}.{key}" if path else str(key)
            if key in SECRET_KEYS and value == MASK:
                if isinstance(old.get(key), str) and old[key] != MASK:
                    document[key] = old[key]
                else:
                    problems.append((where, f'"{MASK}" keeps the running secret, but there is none here: give the value'))
            else:
                problems += _restore_masked(value, old.get(key), where)
    elif isinstance(document, list):
        old_items = current if isinstance(current, list) else []
        by_id = {o["id"]: o for o in old_items if isinstance(o, dict) and isinstance(o.get("id"), str)}
        for i, value in enumerate(document):
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                match = by_id.get(value["id"])
            else:
                match = old_items[i] if i < len(old_items) else None
            problems += _restore_masked(value, match, f"{path}[{i}]")
    return problems


def _local_only_problems(document: dict[str, Any], local: Config) -> list[tuple[str, str]]:
    """Local-only sections and ids given in a push: fine when equal to the local file's, else their key paths."""
    problems: list[tuple[str, str]] = []
    for section in LOCAL_ONLY:
        if section not in document:
            continue
        mine: BaseModel = getattr(local, section)
        try:
            given = type(mine).model_validate(document[section])
        except ValidationError as exc:
            problems += [(format_loc((section, *e["loc"])), e["msg"]) for e in exc.errors()]
            continue
        problems += [(p, _LOCAL_ONLY_MESSAGE) for p in _differences(_plain(given), _plain(mine), section)]
    store = document.get("store")
    if isinstance(store, dict):
        for key in ("id", "gateway"):
            if key in store and store[key] != getattr(local.store, key):
                problems.append((f"store.{key}", f"must stay {getattr(local.store, key)!r} (set in the local file)"))
    return problems


def _plain(model: BaseModel) -> Any:
    return json.loads(json.dumps(_unwrap_secrets(model.model_dump(mode="python")), default=str))


def _differences(a: Any, b: Any, path: str) -> list[str]:
    """The key paths where two JSON values differ (leaves; lists item by item)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def _raw_section(config: Config, section: str) -> Any:
    value = getattr(config, section)
    dumped = value.model_dump(mode="python")
    return _unwrap_secrets(dumped)


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
