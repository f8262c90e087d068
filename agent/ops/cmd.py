"""`ops cmd NAME [--args JSON]`: one command to each online target, its result from each.

A command is not retained (a gateway that comes back an hour later must not
restart a reader then): offline targets are listed as such and not sent to.
Each result is matched on the request id this run generated.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from agent.ops.errors import UsageError
from agent.ops.fleet import GatewayKey
from agent.ops.observer import Observer
from agent.ops.table import format_table

__all__ = ["CommandResult", "render_results", "result_topic", "run_command"]

# Command names end up in topics: the same safe alphabet as ids, and never an MQTT wildcard.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A result longer than this is cut in the table; --json has it whole.
RESULT_WIDTH = 100


@dataclass
class CommandResult:
    key: GatewayKey
    status: str  # ok | error | no answer | offline | never seen
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"store": self.key.store, "gateway": self.key.gateway, "status": self.status}
        if self.status == "ok":
            doc["result"] = self.result
        elif self.error is not None:
            doc["error"] = self.error
        return doc


def result_topic(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"{name!r} is not a command name (letters, digits, '_', '.', '-')")
    return GatewayKey("+", "+").topic(f"cmd/{name}/result")


def parse_args(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--args is not JSON: {exc}") from exc
    if not isinstance(args, dict):
        raise UsageError('--args must be a JSON object, e.g. \'{"reader": "checkout-1"}\'')
    return args


async def run_command(obs: Observer, targets: list[GatewayKey], name: str, args: dict[str, Any],
                      wait_s: float) -> list[CommandResult]:
    fleet = obs.fleet
    request_id = secrets.token_hex(8)
    online = [k for k in targets if fleet.get(k).online]
    await obs.publish_json([(k.topic(f"cmd/{name}"), {"id": request_id, "args": args}) for k in online], retain=False)

    def answer(key: GatewayKey) -> dict[str, Any] | None:
        return next((r for r in fleet.get(key).results.get(name, []) if r.get("id") == request_id), None)

    await obs.wait_until(lambda: all(answer(k) is not None for k in online), wait_s)
    results = []
    for key in targets:
        reply = answer(key)
        if reply is not None:
            ok = reply.get("ok") is True
            results.append(CommandResult(key, "ok" if ok else "error", reply.get("result"),
                                         None if ok else str(reply.get("error"))))
        elif key in online:
            results.append(CommandResult(key, "no answer", error=f"no cmd/{name}/result within {wait_s:g} s"))
        else:
            state = fleet.get(key).state_word
            results.append(CommandResult(key, "never seen" if state == "unknown" else state,
                                         error="not sent: commands are not kept for offline gateways"))
    return results


def render_results(results: list[CommandResult]) -> list[str]:
    rows = []
    for r in results:
        text = json.dumps(r.result, ensure_ascii=False, sort_keys=True) if r.status == "ok" else r.error or ""
        rows.append([str(r.key), r.status, text if len(text) <= RESULT_WIDTH else text[: RESULT_WIDTH - 1] + "…"])
    return format_table(["GATEWAY", "RESULT", "DETAIL"], rows)
