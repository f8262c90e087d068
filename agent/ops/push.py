"""Config pushes: sign, publish retained, wait for each gateway's report; staged rollouts and rollback.

A push publishes the signed document on each target's `config/set`, QoS 1,
**retained**: the broker keeps it as the gateway's desired config, so a
gateway that is offline during the push gets it when it reconnects. All
targets get the same version, one above the highest each of them runs, was
offered (the retained document) or refused, and at least the file's own
`version`. The outcome per gateway is its `config/reported` for that version:
applied, rejected (with the gateway's errors), or, when none came within
`--wait`: offline / never seen (it applies on connect) or no answer.

A staged rollout (`--waves`) pushes wave by wave; after each wave every
gateway pushed so far must have applied and, for `--soak` seconds, stay
online and not red. The first failure stops the rollout and names the
gateway; later waves are not touched. The config each target ran before is
kept in a rollout record (agent/ops/record.py); `--rollback` (or `ops
rollback` later) pushes it back with a new, higher version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config_removals import confirmed
from agent.ops.diff import diff, masked_secrets, render_changes
from agent.ops.documents import ConfigDocument, config_view, removals_between, strip_local_only
from agent.ops.fleet import Fleet, Gateway, GatewayKey, format_errors
from agent.ops.keys import sign
from agent.ops.observer import Observer
from agent.ops.record import RolloutRecord
from agent.ops.table import format_table

__all__ = ["Outcome", "dry_run", "next_version", "previous_config", "push_documents", "render_outcomes",
           "rollback", "rollout"]

Output = Callable[[str], None]

# Outcomes of one target; a gateway that is down is "offline" (its will) or "stopped" (clean stop), as in `fleet`.
APPLIED, REJECTED, NO_ANSWER, NEVER_SEEN = "applied", "rejected", "no answer", "never seen"
UNHEALTHY, UNTOUCHED, NOT_RESTORABLE = "unhealthy", "untouched", "cannot roll back"


@dataclass
class Outcome:
    key: GatewayKey
    old_version: int | None
    new_version: int | None
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == APPLIED


def next_version(fleet: Fleet, keys: list[GatewayKey], floor: int = 0) -> int:
    return max(floor, max((fleet.get(k).highest_config_version for k in keys), default=0) + 1)


def _outcome(gw: Gateway, old: int | None, version: int, wait_s: float) -> Outcome:
    report = gw.config_report or {}
    if report.get("version") == version and report.get("status") == APPLIED:
        return Outcome(gw.key, old, version, APPLIED)
    if report.get("version") == version and report.get("status") == REJECTED:
        detail = format_errors(report.get("errors"), limit=5)
        if report.get("rolled_back"):
            detail += " (tried, rolled back)"
        return Outcome(gw.key, old, version, REJECTED, detail)
    if gw.state is None:
        return Outcome(gw.key, old, version, NEVER_SEEN, "kept on the broker: applied when it first connects")
    if not gw.online:
        return Outcome(gw.key, old, version, gw.state_word, "kept on the broker: applied when it reconnects")
    return Outcome(gw.key, old, version, NO_ANSWER, f"no config/reported for version {version} within {wait_s:g} s")


async def push_documents(obs: Observer, docs: dict[GatewayKey, dict[str, Any]], wait_s: float) -> list[Outcome]:
    """Publish each signed document retained on its gateway's config/set; wait for the online ones' reports."""
    fleet = obs.fleet
    old = {k: fleet.get(k).running_config_version for k in docs}
    await obs.publish_json([(k.topic("config/set"), doc) for k, doc in docs.items()], retain=True)

    def answered(key: GatewayKey) -> bool:
        gw = fleet.get(key)
        report = gw.config_report or {}
        return (report.get("version") == docs[key]["version"] and report.get("status") in (APPLIED, REJECTED)) \
            or gw.online is not True

    await obs.wait_until(lambda: all(answered(k) for k in docs), wait_s)
    return [_outcome(fleet.get(k), old[k], docs[k]["version"], wait_s) for k in docs]


def unhealthy(gw: Gateway) -> str | None:
    if gw.online is not True:
        return "went offline" if gw.state_word == "offline" else gw.state_word
    level, summary = gw.health
    if level == "red":
        return f"health red: {summary or 'no reason given'}"
    return None


async def soak(obs: Observer, keys: list[GatewayKey], seconds: float) -> dict[GatewayKey, str]:
    """Watch `keys` for `seconds`; those that went offline or red, as soon as one does."""
    fleet = obs.fleet
    await obs.wait_until(lambda: any(unhealthy(fleet.get(k)) for k in keys), seconds)
    return {k: reason for k in keys if (reason := unhealthy(fleet.get(k))) is not None}


def _push_it_runs(gw: Gateway) -> tuple[dict[str, Any] | None, str]:
    """The retained config/set document if it is the version the gateway runs, and how to name it."""
    running = gw.running_config_version
    desired = gw.desired_config
    if desired is not None and running is not None and desired.get("version") == running:
        return desired, f"config/set version {running}, the push it runs"
    return None, ""


def previous_config(gw: Gateway) -> tuple[dict[str, Any] | None, str]:
    """The config a rollback would restore, and where it comes from (or why there is none)."""
    pushed, source = _push_it_runs(gw)
    if pushed is not None:  # first: unlike a reported config, it has the secrets
        return strip_local_only(pushed)[0], source
    reported = (gw.config_report or {}).get("config")
    if isinstance(reported, dict):
        body, _ = strip_local_only(reported)
        # A secret pushed back as "***" keeps the value the gateway runs then.
        masked = " (its masked secrets keep their running values)" if masked_secrets(body) else ""
        return body, f"its reported running config{masked}"
    return None, "unknown: it runs its local file or a push made elsewhere, and does not report its config"


@dataclass
class RolloutResult:
    outcomes: list[Outcome]
    stopped: str | None

    @property
    def ok(self) -> bool:
        return self.stopped is None and all(o.ok or o.status == UNTOUCHED for o in self.outcomes)


async def rollout(obs: Observer, targets: list[GatewayKey], doc: dict[str, Any], waves: list[int],
                  *, staged: bool, soak_s: float, wait_s: float, record: RolloutRecord, out: Output) -> RolloutResult:
    fleet = obs.fleet
    outcomes: dict[GatewayKey, Outcome] = {}
    stopped: str | None = None
    start = 0
    for n, size in enumerate(waves, 1):
        wave = targets[start:start + size]
        start += size
        if staged:
            out(f"wave {n}/{len(waves)}: {', '.join(map(str, wave))}")
        record.wave(wave)
        for o in await push_documents(obs, dict.fromkeys(wave, doc), wait_s):
            outcomes[o.key] = o
            record.outcome(o.key, o.status, o.detail)
        failed = [outcomes[k] for k in wave if not outcomes[k].ok]
        if failed and staged:
            stopped = f"wave {n}: " + "; ".join(f"{o.key} {o.status}" for o in failed)
            break
        if soak_s > 0:
            pushed = [k for k in targets[:start] if outcomes[k].ok]
            out(f"  soaking {soak_s:g} s: {len(pushed)} gateway(s) must stay online and not red")
            bad = await soak(obs, pushed, soak_s)
            for key, reason in bad.items():
                outcomes[key].status, outcomes[key].detail = UNHEALTHY, reason
                record.outcome(key, UNHEALTHY, reason)
            if bad:
                stopped = f"wave {n}, soak: " + "; ".join(f"{k} {r}" for k, r in bad.items())
                break
    rest = "not pushed: the rollout stopped" if stopped else "not pushed: beyond the last wave"
    for key in targets[start:]:
        outcomes[key] = Outcome(key, fleet.get(key).running_config_version, None, UNTOUCHED, rest)
    record.stop(stopped)
    return RolloutResult([outcomes[k] for k in targets], stopped)


async def rollback(obs: Observer, record: RolloutRecord, key: Ed25519PrivateKey, wait_s: float) -> list[Outcome]:
    """Push back, with a new version, the previous config of every gateway the recorded push reached."""
    fleet = obs.fleet
    touched = [k for k in record.targets() if record.status(k) != UNTOUCHED]
    version = next_version(fleet, touched)
    docs: dict[GatewayKey, dict[str, Any]] = {}
    outcomes: list[Outcome] = []
    pushed = record.data.get("document") or {}
    for k in touched:
        previous, source = record.previous(k)
        if previous is None:
            outcomes.append(Outcome(k, fleet.get(k).running_config_version, None, NOT_RESTORABLE, source))
            continue
        # Restoring takes away what the rollout added: name it, or the gateway refuses the rollback.
        remove = removals_between(pushed, previous) or []
        docs[k] = sign({**previous, "version": version, **({"remove": remove} if remove else {})}, key)
    if docs:
        outcomes += await push_documents(obs, docs, wait_s)
    outcomes.sort(key=lambda o: o.key)
    record.rolled_back(version, {o.key: (o.status, o.detail) for o in outcomes})
    return outcomes


def _running_view(gw: Gateway) -> tuple[dict[str, Any] | None, str]:
    reported = (gw.config_report or {}).get("config")
    if isinstance(reported, dict):
        return config_view(reported), "its reported running config"
    pushed, source = _push_it_runs(gw)
    if pushed is not None:
        return config_view(pushed), source
    return None, ("it does not report its running config, and no push it runs is kept on the broker "
                  "(it runs its local file or a push made elsewhere)")


def dry_run(fleet: Fleet, targets: list[GatewayKey], document: ConfigDocument, version: int) -> list[str]:
    new = document.view
    lines = []
    for key in targets:
        gw = fleet.get(key)
        old = gw.running_config_version
        head = f"{key} ({gw.state_word}): version {'-' if old is None else old} -> {version}"
        base, source = _running_view(gw)
        if base is None:
            lines += [f"{head}: cannot diff: {source}"]
            continue
        changes, secrets = diff(base, new)
        hidden = f"; {secrets} secret(s) masked, not compared" if secrets else ""
        lines.append(f"{head}, compared with {source}: {len(changes) or 'no'} change(s){hidden}")
        lines += [f"  {line}" for line in render_changes(changes)]
        lines += [f"  {line}" for line in _removal_lines(removals_between(base, document.body), document.remove)]
    return lines


def _removal_lines(removed: list[str] | None, confirmed_names: list[str]) -> list[str]:
    """What the gateway will ask `remove` to name, and whether the push does (agent/config_removals.py)."""
    missing = [r for r in removed or [] if not confirmed(r, confirmed_names)]
    if missing:
        names = " ".join(f"--remove '{r}'" for r in missing)
        return [f"! it would refuse this push: it removes {', '.join(missing)}; confirm with {names}"]
    return [f"removes {', '.join(removed)}: confirmed"] if removed else []


def render_outcomes(outcomes: list[Outcome]) -> list[str]:
    rows = []
    for o in outcomes:
        old = "-" if o.old_version is None else str(o.old_version)
        versions = old if o.new_version is None else f"{old} -> {o.new_version}"
        rows.append([str(o.key), versions, o.status, o.detail])
    return format_table(["GATEWAY", "VERSION", "RESULT", "DETAIL"], rows)
