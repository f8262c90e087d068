"""`o2o-edge ops …`: the central ops commands (docs/ops.md walks through them).

    keygen DIR                        an Ed25519 key pair for signing config pushes
    push CONFIG --key K TARGET        sign and push a config; --dry-run, --waves/--soak, --rollback
    rollback --key K                  push back the previous configs of the last rollout
    publish KIND FILE TARGET          catalog, members, campaigns, collect or qr
    fleet [--json] [--watch]          every gateway seen on the broker
    cmd NAME [--args JSON] TARGET     a command and each gateway's result

TARGET is `--store S --gateway G`, `--store S` or `--all`. Exit codes: 0
success, 1 a gateway rejected, did not answer or is unhealthy, 2 bad usage or
an invalid document (nothing sent), 3 the broker is unreachable or refused us.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.ops.errors import EXIT_FAILED, OpsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.ops.broker import BrokerOptions
    from agent.ops.observer import Observer
    from agent.ops.record import RolloutRecord

__all__ = ["add_arguments", "run"]

# The kinds of agent/ops/publish.py KINDS, named here so that building the parser imports nothing heavy.
KIND_NAMES = ("campaigns", "catalog", "collect", "members", "qr")
# How long to wait for the retained burst when the broker does not echo our marker (see observer.py).
SETTLE_S = 5.0


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err(line: str) -> None:
    sys.stderr.write(line + "\n")


# -- arguments ---------------------------------------------------------------------------------

def _broker_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("broker (like a gateway's [mqtt])")
    g.add_argument("--host", default="127.0.0.1", help="MQTT broker (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=None, help="default 1883, or 8883 with TLS")
    g.add_argument("--tls", action="store_true", help="TLS with the system's CAs (implied by --tls-ca/--cert)")
    g.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA certificate(s) of the broker")
    g.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (with --key-file)")
    g.add_argument("--key-file", type=Path, metavar="FILE", help="client certificate's private key")
    g.add_argument("--username")
    g.add_argument("--password-file", type=Path, metavar="FILE", help="first line is the password")
    g.add_argument("--settle", type=float, default=SETTLE_S, metavar="S", help=argparse.SUPPRESS)
    return p


def _target_options(required: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("targets" if required else "filter")
    g.add_argument("--store", metavar="S", help="every gateway of store S (with --gateway: one of them)")
    if required:
        g.add_argument("--gateway", metavar="G", help="with --store: only gateway G")
        g.add_argument("--all", action="store_true", help="every gateway seen on the broker")
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Central ops: sign and push config, publish documents, run commands, watch the fleet."
    sub = parser.add_subparsers(dest="ops_command", required=True, metavar="COMMAND")
    broker, targets = _broker_options(), _target_options()
    k = sub.add_parser("keygen", help="write an Ed25519 signing key pair; print the [mqtt] config_public_key line")
    k.add_argument("dir", type=Path)

    p = sub.add_parser("push", parents=[broker, targets], help="sign and push a config (TOML or JSON)")
    p.add_argument("config", type=Path, metavar="CONFIG")
    p.add_argument("--key", type=Path, metavar="PRIVATE", help="signing key from `ops keygen` (not needed with --dry-run)")
    p.add_argument("--wait", type=float, default=30.0, metavar="S", help="for each wave's reports (default 30)")
    p.add_argument("--dry-run", action="store_true", help="show per gateway what would change; send nothing")
    p.add_argument("--waves", metavar="LIST", help="staged rollout, cumulative: e.g. 1,10%%,100%%")
    p.add_argument("--soak", type=float, default=0.0, metavar="S", help="after each wave, must stay online and not red")
    p.add_argument("--remove", action="append", metavar="PATH", default=[],
                   help="confirm a removal the push makes, e.g. 'rfid.readers[door]' or ble (repeatable)")
    p.add_argument("--rollback", action="store_true", help="if the rollout stops, push the previous configs back")
    p.add_argument("--state-dir", type=Path, metavar="DIR", help="rollout records (default $XDG_STATE_HOME/o2o-edge-ops)")

    r = sub.add_parser("rollback", parents=[broker], help="push back the configs a recorded rollout replaced")
    r.add_argument("--key", type=Path, metavar="PRIVATE", required=True)
    r.add_argument("--record", type=Path, metavar="FILE", help="a rollout record (default: the latest)")
    r.add_argument("--wait", type=float, default=30.0, metavar="S")
    r.add_argument("--state-dir", type=Path, metavar="DIR")

    pub = sub.add_parser("publish", parents=[broker, targets], help="publish a catalog, members, campaigns, collect or qr document")
    pub.add_argument("kind", choices=KIND_NAMES, metavar="KIND", help=", ".join(KIND_NAMES))
    pub.add_argument("file", type=Path, metavar="FILE", help="the document, JSON")
    pub.add_argument("--wait", type=float, default=30.0, metavar="S")

    f = sub.add_parser("fleet", parents=[broker, _target_options(required=False)], help="every gateway seen, problems first")
    f.add_argument("--json", action="store_true", help="one JSON array")
    f.add_argument("--watch", action="store_true", help="keep the list current until Ctrl-C")

    c = sub.add_parser("cmd", parents=[broker, targets], help="send a command, print each gateway's result")
    c.add_argument("name", metavar="NAME", help="ping, status, resync, reload-config, drain-readers, …")
    c.add_argument("--args", metavar="JSON", help="the command's arguments, a JSON object")
    c.add_argument("--wait", type=float, default=10.0, metavar="S")
    c.add_argument("--json", action="store_true")


def _options(args: argparse.Namespace) -> BrokerOptions:
    from agent.ops.broker import BrokerOptions

    tls = bool(args.tls or args.tls_ca or args.cert)
    return BrokerOptions(args.host, args.port or (8883 if tls else 1883), tls, args.tls_ca, args.cert, args.key_file,
                         args.username, args.password_file)


def _observer(args: argparse.Namespace, *extra: str) -> Observer:
    from agent.ops.observer import FLEET_TOPICS, Observer

    return Observer(_options(args), (*FLEET_TOPICS, *extra), settle_s=args.settle, warn=err)


def _signing_key(path: Path | None) -> Ed25519PrivateKey:
    from agent.ops.errors import UsageError
    from agent.ops.keys import load_signing_key

    if path is None:
        raise UsageError("--key PRIVATE is needed to sign (make one with `o2o-edge ops keygen DIR`)")
    key, warning = load_signing_key(path)
    if warning:
        err(f"warning: {warning}")
    return key


# -- subcommands -------------------------------------------------------------------------------

def _keygen(args: argparse.Namespace) -> int:
    from agent.ops.keys import keygen

    pair = keygen(args.dir)
    out(f"private key: {pair.private_path} (mode 0600: keep it with central ops, never on a gateway)")
    out(f"public key:  {pair.public_path}")
    out("paste this line into the [mqtt] section of every gateway's config file:")
    out(pair.config_line)
    return 0


async def _push(args: argparse.Namespace) -> int:
    from agent.ops import push as p
    from agent.ops.documents import load_config_document
    from agent.ops.keys import sign
    from agent.ops.record import RolloutRecord, default_state_dir
    from agent.ops.targets import parse_waves, plan_waves, select_targets

    document = load_config_document(args.config, args.remove)  # before connecting: a bad file sends nothing
    key = None if args.dry_run else _signing_key(args.key)
    steps = parse_waves(args.waves) if args.waves else None
    if document.stripped:
        out(f"not sent (each gateway's local file owns them): {', '.join(document.stripped)}")
    async with _observer(args) as obs:
        targets = select_targets(obs.fleet, args.store, args.gateway, args.all)
        version = p.next_version(obs.fleet, targets, document.min_version)
        if args.dry_run:
            for line in p.dry_run(obs.fleet, targets, document, version):
                out(line)
            return 0
        assert key is not None
        waves = plan_waves(len(targets), steps) if steps else [len(targets)]
        previous = {k: (obs.fleet.get(k).running_config_version, *p.previous_config(obs.fleet.get(k))) for k in targets}
        record = RolloutRecord.create(args.state_dir or default_state_dir(), args.config, document.document(version),
                                      previous)
        doc = sign(document.document(version), key)
        out(f"pushing {args.config} as version {version} to {len(targets)} gateway(s)"
            + (f" in {len(waves)} wave(s)" if steps else ""))
        result = await p.rollout(obs, targets, doc, waves, staged=steps is not None, soak_s=args.soak,
                                 wait_s=args.wait, record=record, out=out)
        for line in p.render_outcomes(result.outcomes):
            out(line)
        if result.stopped:
            out(f"rollout stopped at {result.stopped}")
        out(f"rollout record: {record.path}")
        if result.stopped and args.rollback:
            out("rolling back:")
            return await _do_rollback(obs, record, key, args.wait) or EXIT_FAILED
        return 0 if result.ok else EXIT_FAILED


async def _do_rollback(obs: Observer, record: RolloutRecord, key: Ed25519PrivateKey, wait_s: float) -> int:
    from agent.ops import push as p

    outcomes = await p.rollback(obs, record, key, wait_s)
    if not outcomes:
        out("nothing to roll back: the rollout reached no gateway")
        return 0
    for line in p.render_outcomes(outcomes):
        out(line)
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


async def _rollback(args: argparse.Namespace) -> int:
    from agent.ops.record import RolloutRecord, default_state_dir

    key = _signing_key(args.key)
    record = RolloutRecord.load(args.record) if args.record else RolloutRecord.latest(args.state_dir or default_state_dir())
    out(f"rolling back {record.path.name} (version {record.data['version']} of {record.data['config_file']})")
    async with _observer(args) as obs:
        return await _do_rollback(obs, record, key, args.wait)


async def _publish(args: argparse.Namespace) -> int:
    from agent.ops.documents import read_document
    from agent.ops.publish import KINDS, check_document, publish
    from agent.ops.push import render_outcomes
    from agent.ops.targets import select_targets

    kind = KINDS[args.kind]
    doc = read_document(args.file)
    out(f"{args.file}: {check_document(kind, doc, str(args.file))}")
    async with _observer(args) as obs:
        targets = select_targets(obs.fleet, args.store, args.gateway, args.all)
        outcomes = await publish(obs, kind, doc, targets, args.wait)
    for line in render_outcomes(outcomes):
        out(line)
    return 0 if all(o.status in ("applied", "sent") for o in outcomes) else EXIT_FAILED


async def _cmd(args: argparse.Namespace) -> int:
    from agent.ops.cmd import parse_args, render_results, result_topic, run_command
    from agent.ops.targets import select_targets

    command_args = parse_args(args.args)
    async with _observer(args, result_topic(args.name)) as obs:
        targets = select_targets(obs.fleet, args.store, args.gateway, args.all)
        results = await run_command(obs, targets, args.name, command_args, args.wait)
    if args.json:
        out(json.dumps([r.to_json() for r in results], indent=1, ensure_ascii=False))
    else:
        for line in render_results(results):
            out(line)
    return 0 if all(r.ok for r in results) else EXIT_FAILED


async def _fleet(args: argparse.Namespace) -> int:
    from agent.ops.fleet import render_fleet

    async with _observer(args) as obs:
        def show() -> None:
            gateways = [g for g in obs.fleet.sorted() if args.store in (None, g.key.store)]
            now = time.time()
            if args.json:
                out(json.dumps([g.to_json(now) for g in gateways], indent=1, ensure_ascii=False))
            else:
                for line in render_fleet(gateways, now):
                    out(line)

        show()
        while args.watch:
            await obs.changed()
            await asyncio.sleep(1.0)  # let a burst of changes (a fleet reconnecting) land in one redraw
            out("\x1b[H\x1b[2J" if sys.stdout.isatty() else f"\n-- {time.strftime('%H:%M:%S')}")
            show()
    return 0


_ASYNC: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "push": _push, "rollback": _rollback, "publish": _publish, "cmd": _cmd, "fleet": _fleet,
}


def run(args: argparse.Namespace) -> int:
    try:
        if args.ops_command == "keygen":
            return _keygen(args)
        return asyncio.run(_ASYNC[args.ops_command](args))
    except OpsError as exc:
        err(f"o2o-edge ops {args.ops_command}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
