"""Versioned documents from central ops (catalog, members, campaigns, QR codes): one way to take them.

Every document is validated whole with its pydantic model before anything
changes, and gets a report on `{kind}/reported` (retained):
`{"version", "status": "applied"|"rejected", "errors": [{"path", "message"}], "running_version"}`.
A document is applied only if its version is above the running one. Ops
publish documents retained (the desired state, so a gateway that was offline
gets it when it reconnects): a retained copy of what is already running is
ignored without a report, so a broker restart re-applies nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.config import format_loc
from agent.config_sections import MAX_VERSION
from agent.errors import O2OEdgeError

__all__ = [
    "DocumentError", "Report", "applied", "claimed_version", "one_entry_each", "parse_document", "rejected",
    "take_versioned", "validation_errors",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Report = dict[str, Any]
# At most this many problems are reported; a wholly wrong document does not make a megabyte report.
MAX_REPORTED_ERRORS = 50


class DocumentError(O2OEdgeError):
    """A document that cannot be taken; `errors` are [{"path", "message"}]."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['path'] or '(document)'}: {e['message']}" for e in errors[:3]))
        self.errors = errors


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"path": format_loc(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()[:MAX_REPORTED_ERRORS]]


def one_entry_each(keys: Iterable[str], field: str, what: str, shown: str = "") -> None:
    """ValueError naming the entries of `field` whose key an earlier one has ("products[2] repeats products[0]
    (GTIN …)"), the first three and a count: a document listing one thing twice cannot say which it means."""
    first: dict[str, int] = {}
    twice = [f"{field}[{i}] repeats {field}[{first[k]}] ({shown}{k})"
             for i, k in enumerate(keys) if first.setdefault(k, i) != i]
    if twice:
        more = f" and {len(twice) - 3} more" if len(twice) > 3 else ""
        raise ValueError(f"one entry per {what}: {'; '.join(twice[:3])}{more}")


def parse_document(model: type[M], payload: bytes, *, max_bytes: int) -> M:
    """Size, JSON and schema, or DocumentError with key paths."""
    if len(payload) > max_bytes:
        raise DocumentError([{"path": "", "message": f"payload too large: {len(payload)} bytes (limit {max_bytes})"}])
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise DocumentError(validation_errors(exc)) from exc
    except RecursionError as exc:
        raise DocumentError([{"path": "", "message": "JSON nested too deeply"}]) from exc


def rejected(version: Any, errors: list[dict[str, str]], running: int) -> Report:
    return {"version": version, "status": "rejected", "errors": errors, "running_version": running}


def applied(version: int, **extra: Any) -> Report:
    return {"version": version, "status": "applied", "errors": [], "running_version": version, **extra}


def claimed_version(payload: bytes) -> int | None:
    """The `version` a payload says it has, for a report on a document that failed validation: an integer
    a report can carry (0 to MAX_VERSION), else None (the errors say what is wrong with it)."""
    import orjson

    try:
        doc = orjson.loads(payload[: 1024 * 1024])
    except orjson.JSONDecodeError:
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if type(version) is int and 0 <= version <= MAX_VERSION else None


async def take_versioned(kind: str, model: type[M], payload: bytes, retained: bool, *, running: int,
                         apply: Callable[[M], Awaitable[Report]], max_bytes: int = 8 * 1024 * 1024) -> Report | None:
    """Validate, order by version, apply; the report to send (None: a retained copy of what runs)."""
    try:
        doc = parse_document(model, payload, max_bytes=max_bytes)
    except DocumentError as exc:
        log.warning("%s/set rejected: %d problem(s), first: %s", kind, len(exc.errors), exc)
        return rejected(claimed_version(payload), exc.errors, running)
    version = int(getattr(doc, "version"))  # noqa: B009 - every versioned model has it; the TypeVar cannot say so
    if version <= running:
        if retained:
            log.debug("%s/set: retained version %d is not newer than %d; nothing to do", kind, version, running)
            return None
        msg = f"stale: version {version} is not newer than {running}"
        log.warning("%s/set rejected: %s", kind, msg)
        return rejected(version, [{"path": "version", "message": msg}], running)
    try:
        return await apply(doc)
    except DocumentError as exc:
        log.warning("%s/set rejected: %s", kind, exc)
        return rejected(version, exc.errors, running)
