"""`ops publish KIND FILE`: the store documents other than config (catalog, members, campaigns, collect, qr).

Each kind is one row of KINDS: its topic, whether the gateway reports the
outcome (and on which `{kind}/reported`), whether the document is retained as
desired state (the versioned, whole-replace documents are; `collect/add` adds
orders and is not), and the pydantic model the gateway validates it with. A
model that is not installed here (the O2O modules under agent/o2o/ are newer
than some installs) leaves a check of the top-level keys only, and says so.

A versioned document's answer is the report of its version; an unversioned
one's (`collect/reported`) is the first report after the publish.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.config import format_loc
from agent.ops.errors import DocumentError, UsageError
from agent.ops.fleet import Gateway, GatewayKey, format_errors
from agent.ops.observer import Observer
from agent.ops.push import APPLIED, NEVER_SEEN, NO_ANSWER, REJECTED, Outcome

__all__ = ["KINDS", "Kind", "check_document", "publish"]

# A document with thousands of errors is reported by its first ones.
MAX_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    topic: str  # under o2o/v1/{store}/{gateway}/
    retain: bool  # desired state kept on the broker (whole-replace documents)
    models: tuple[str, ...]  # "module:Class" the gateway validates with, first importable wins
    keys: dict[str, type]  # required top-level keys (and their JSON types) for the fallback check
    optional: tuple[str, ...] = ()
    reported: bool = True  # the gateway answers on {name}/reported

    @property
    def versioned(self) -> bool:
        return "version" in self.keys


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("catalog", "catalog/set", True, ("agent.catalog:CatalogDoc",),
         {"version": int, "currency": str, "products": list}),
    Kind("members", "members/set", True, ("agent.o2o.members:MembersDoc",), {"version": int, "members": list}),
    Kind("campaigns", "campaigns/set", True, ("agent.o2o.campaigns:CampaignsDoc",),
         {"version": int, "campaigns": list}),
    Kind("collect", "collect/add", False, ("agent.o2o.collect:CollectAdd",), {"orders": list}),
    Kind("qr", "qr/set", True, ("agent.o2o.qr_codes:QrDoc", "agent.o2o.qr:QrDoc"),
         {"version": int, "base_url": str, "codes": list},
         optional=("allowed_hosts",)),
)}


def find_model(kind: Kind) -> tuple[type[BaseModel] | None, str]:
    """The gateway's model for `kind` if installed, and which one (or why none)."""
    for spec in kind.models:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        model = getattr(module, attr, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model, f"validated with {module_name}.{attr}"
    names = " or ".join(s.replace(":", ".") for s in kind.models)
    return None, f"{names} is not installed here: checked only the top-level keys ({', '.join(kind.keys)})"


def _shape_problems(kind: Kind, doc: dict[str, Any]) -> list[str]:
    problems = [f"{key}: is required" for key in kind.keys if key not in doc]
    for key, typ in kind.keys.items():
        value = doc.get(key)
        if key in doc and (not isinstance(value, typ) or isinstance(value, bool)):
            problems.append(f"{key}: must be a JSON {'number' if typ is int else typ.__name__.replace('str', 'string')}")
    problems += [f"{key}: unknown key" for key in doc if key not in kind.keys and key not in kind.optional]
    return problems


def check_document(kind: Kind, doc: dict[str, Any], source: str) -> str:
    """Validate locally; a DocumentError with every problem (key paths), else how it was checked."""
    model, how = find_model(kind)
    if model is None:
        problems = _shape_problems(kind, doc)
    else:
        try:
            model.model_validate(doc)
            problems = []
        except ValidationError as exc:
            problems = [f"{format_loc(tuple(e['loc'])) or '(document)'}: {e['msg']}" for e in exc.errors()[:MAX_PROBLEMS]]
            if exc.error_count() > MAX_PROBLEMS:
                problems.append(f"… and {exc.error_count() - MAX_PROBLEMS} more")
    if kind.versioned and "version" in doc and not problems and (
            not isinstance(doc["version"], int) or isinstance(doc["version"], bool) or doc["version"] < 1):
        problems.append("version: must be a whole number >= 1")
    if problems:
        raise DocumentError(source, problems)
    return how


def _answers(kind: Kind, report: dict[str, Any], version: Any) -> bool:
    """Whether `report` answers the document just published."""
    if kind.versioned:
        return bool(report) and report.get("version") == version
    return bool(report)  # forgotten before the publish: any report now is the answer


def _applied_version(report: dict[str, Any] | None) -> int | None:
    if report and report.get("status") == APPLIED and isinstance(report.get("version"), int):
        return int(report["version"])
    return None


async def publish(obs: Observer, kind: Kind, doc: dict[str, Any], targets: list[GatewayKey],
                  wait_s: float) -> list[Outcome]:
    fleet = obs.fleet
    version = doc.get("version") if kind.versioned else None
    if version is not None:
        stale = [f"{k} has {v}" for k in targets
                 if (v := _applied_version(fleet.get(k).reports.get(kind.name))) is not None and v >= version]
        if stale:
            raise UsageError(f"{kind.name} version {version} is not newer than what runs ({', '.join(stale)}): "
                             "raise the document's version")
    old = {k: _applied_version(fleet.get(k).reports.get(kind.name)) for k in targets}
    if not kind.versioned:  # its answer is the next report: forget the one kept from before
        for k in targets:
            fleet.get(k).reports.pop(kind.name, None)
    online = [k for k in targets if fleet.get(k).online]
    send = targets if kind.retain else online
    await obs.publish_json([(k.topic(kind.topic), doc) for k in send], retain=kind.retain)

    def report(key: GatewayKey) -> dict[str, Any]:
        return fleet.get(key).reports.get(kind.name) or {}

    def answered(key: GatewayKey) -> bool:
        return _answers(kind, report(key), version) or fleet.get(key).online is not True

    if kind.reported:
        await obs.wait_until(lambda: all(answered(k) for k in online), wait_s)
    new = version if isinstance(version, int) else None
    return [Outcome(k, old[k], new, *_result(kind, fleet.get(k), report(k), version, k in send, wait_s))
            for k in targets]


def _result(kind: Kind, gw: Gateway, report: dict[str, Any], version: Any, sent: bool,
            wait_s: float) -> tuple[str, str]:
    """(status, detail) of one target."""
    if kind.reported and _answers(kind, report, version) and report.get("status") in (APPLIED, REJECTED):
        errors = format_errors(report.get("errors")) if report.get("errors") else ""
        orders = report.get("orders")
        detail = f"orders: {', '.join(map(str, orders))}" if isinstance(orders, list) and orders else ""
        return report["status"], "; ".join(d for d in (detail, errors) if d)
    if gw.state is None:
        return NEVER_SEEN, "kept on the broker: applied when it first connects" if sent else "not sent"
    if not gw.online:
        return gw.state_word, ("kept on the broker: applied when it reconnects" if kind.retain
                               else f"not sent: {kind.topic} is not kept for offline gateways")
    if not kind.reported:
        return "sent", f"the broker acknowledged it; the gateway does not report {kind.name}"
    return NO_ANSWER, f"no {kind.name}/reported for version {version} within {wait_s:g} s"
