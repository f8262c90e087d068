"""Config files for `ops push`, read and validated locally with the gateway's own schema.

A config file is TOML (`.toml`) or JSON (anything else that parses as JSON),
shaped like a gateway's local file. What a push must not carry is stripped
before validation and never sent: the sections and keys each gateway's local
file owns (`storage`, `http`, `mqtt`, `store.id`, `store.gateway`: a gateway
rejects a push that sets them differently) and any old `signature`. A
`version` in the file is the lowest version the push will use, and a
`remove` list (with `--remove`) confirms what the push takes away: a gateway
refuses a push that would remove a section, reader, station, gate or beacon
it has unless `remove` names it (agent/config_removals.py); `removals_between`
works out those names where the running config is known.

`config_view` is the form two configs are compared in (`--dry-run`): the
schema's JSON dump with defaults filled in, secrets masked, and without the
local-only parts and the version.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, parse_config
from agent.config_push import LOCAL_ONLY
from agent.config_removals import REMOVAL_NAME, removals
from agent.errors import ConfigError
from agent.ops.errors import DocumentError, UsageError

__all__ = ["ConfigDocument", "config_view", "load_config_document", "read_document", "removals_between",
           "strip_local_only"]

# Stands in for store.id / store.gateway while validating: each gateway fills in its own.
_PLACEHOLDER = "ops-check"


def read_document(path: Path) -> dict[str, Any]:
    """A JSON object or TOML table from `path`; any failure is a DocumentError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        doc: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DocumentError(str(path), [f"TOML syntax error: {exc}"]) from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DocumentError(str(path), [f"not JSON (name TOML files *.toml): {exc}"]) from exc
    if not isinstance(doc, dict):
        raise DocumentError(str(path), ["expected a JSON object at the top level"])
    return doc


def strip_local_only(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the document without the local-only keys, version, signature and remove; the local-only keys it had)."""
    body = {k: v for k, v in doc.items() if k not in (*LOCAL_ONLY, "version", "signature", "remove")}
    stripped = [k for k in LOCAL_ONLY if k in doc]
    store = body.get("store")
    if isinstance(store, dict):
        stripped += [f"store.{k}" for k in ("id", "gateway") if k in store]
        # Kept even when empty: a [store] left out of a push is a removal the gateway wants confirmed.
        body["store"] = {k: v for k, v in store.items() if k not in ("id", "gateway")}
    return body, stripped


def validate_body(body: dict[str, Any], source: str) -> Config:
    """The schema's verdict on a push body (each gateway adds its own store ids and local sections)."""
    store = body.get("store", {})
    doc = {**body, "store": {**store, "id": _PLACEHOLDER, "gateway": _PLACEHOLDER} if isinstance(store, dict) else store}
    try:
        return parse_config(doc, source)
    except ConfigError as exc:
        raise DocumentError(source, [str(p) for p in exc.problems]) from exc


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    path: Path
    body: dict[str, Any]  # what every target gets, before its version, remove list and signature
    min_version: int  # the file's own `version` (0 if none)
    stripped: list[str]  # local-only keys the file had: not sent
    remove: list[str]  # removals confirmed (the file's `remove` and --remove)

    @property
    def view(self) -> dict[str, Any]:
        return config_view(self.body)

    def document(self, version: int) -> dict[str, Any]:
        """What is signed and sent."""
        return {**self.body, "version": version, **({"remove": self.remove} if self.remove else {})}


def _removal_problems(names: Any, where: str) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [f'{where}: expected a list of key paths, e.g. ["rfid.readers[checkout-2]"]']
    return [f"{where}: {n!r} is not a key path such as rfid.readers[checkout-2] or ble" for n in names
            if not REMOVAL_NAME.match(n)]


def load_config_document(path: Path, remove: list[str] | None = None) -> ConfigDocument:
    doc = read_document(path)
    body, stripped = strip_local_only(doc)
    version = doc.get("version", 0)
    problems = _removal_problems(doc.get("remove", []), "remove") + _removal_problems(remove or [], "--remove")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        problems.append("version: must be a whole number >= 0")
    try:
        validate_body(body, str(path))
    except DocumentError as exc:
        problems += exc.problems
    if problems:
        raise DocumentError(str(path), problems)
    names = list(dict.fromkeys([*doc.get("remove", []), *(remove or [])]))
    return ConfigDocument(path, body, int(version), stripped, names)


def removals_between(old: dict[str, Any], new: dict[str, Any]) -> list[str] | None:
    """What pushing `new` takes away from a gateway running `old`, named as a gateway asks for them in
    `remove`; None if either does not pass the schema here (a newer gateway's config, say)."""
    try:
        before, after = validate_body(strip_local_only(old)[0], "old"), validate_body(strip_local_only(new)[0], "new")
    except DocumentError:
        return None
    # As the gateway counts them: the top-level keys the pushed document leaves out.
    return removals(before, after, omitted={name for name in type(after).model_fields if name not in new})


def config_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A config document (a push body, a retained config/set or a gateway's reported config) in the
    form they are compared in. One the schema does not accept is compared as it is."""
    body, _ = strip_local_only(doc)
    try:
        config = validate_body(body, "view")
    except DocumentError:
        return body
    view = config.model_dump(mode="json", exclude={*LOCAL_ONLY, "version"})
    view["store"] = {k: v for k, v in view["store"].items() if k not in ("id", "gateway")}
    return view
