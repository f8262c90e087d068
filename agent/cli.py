"""The `o2o-edge` command: `run` the daemon, `check-config` a file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config import load_config
from agent.errors import ConfigError, O2OEdgeError, StorageError

__all__ = ["main"]

log = logging.getLogger("agent")

DEFAULT_CONFIG = Path("/etc/o2o-edge/o2o-edge.toml")
# The demo config ships in the checkout; `--demo` without `--config` uses it.
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="o2o-edge", description="In-store edge agent for connected shops.")
    parser.add_argument("--version", action="version", version=f"o2o-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, help=f"config file (default {DEFAULT_CONFIG}; with --demo, config/demo.toml)")
    run.add_argument("--demo", action="store_true", help="start simulated readers on ptys for readers with a [simulator]")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides [logging] level")
    check = sub.add_parser("check-config", help="validate a config file; print every problem with its key path "
                                                 "(exit 78 if invalid) and warnings (exit 0)")
    check.add_argument("path", type=Path)
    hp = sub.add_parser("hash-password", help="print a staff login for [http] users = [...] (password asked, or on "
                                              "stdin)")
    hp.add_argument("user")
    hp.add_argument("role", choices=["staff", "admin"])
    from agent.ops.cli import add_arguments as add_ops_arguments

    add_ops_arguments(sub.add_parser("ops", help="central ops: keygen, push, rollback, publish, fleet, cmd"))
    from drivers.wifi.ndsctl_helper import add_arguments as add_helper_arguments

    add_helper_arguments(sub.add_parser("ndsctl-helper", help="run one checked ndsctl request from stdin, as root "
                                                               "(systemd/o2o-edge-ndsctl@.service)"))
    return parser


def _hash_password(user: str, role: str) -> int:
    import getpass
    import re

    from agent.config_sections import ID_PATTERN
    from agent.web.auth import hash_password

    if not re.fullmatch(ID_PATTERN, user):  # what [http] users accepts: refused here, not at the next start
        print(f"hash-password: {user!r} cannot be a login name: letters, digits, '.', '_' and '-', at most 64",
              file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {user}: ")
        if password != getpass.getpass("again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("use at least 8 characters", file=sys.stderr)
        return 1
    print(f'{{ name = "{user}", role = "{role}", password_hash = "{hash_password(password)}" }}')
    return 0


def _check_config(path: Path) -> int:
    """Every error with its key path (exit 78, EX_CONFIG, as `run` gives for the same file), else ok and
    the warnings (exit 0)."""
    from agent.check_config import warnings
    from agent.startup import EXIT_CONFIG

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    readers = len(config.rfid.readers)
    print(f"{path}: ok (store {config.store.id}, gateway {config.store.gateway}, "
          f"{readers} reader(s), config version {config.version})")
    found = warnings(config)
    if found:
        print(f"{path}: {len(found)} warning(s)", file=sys.stderr)
        for problem in found:
            print(f"  warning: {problem}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    """The daemon; every start-up failure is one log line and an exit code (agent/startup.py)."""
    from agent.app import Agent
    from agent.instance_lock import InstanceLock
    from agent.logs import setup_logging
    from agent.startup import EXIT_CANTCREAT, EXIT_CONFIG, EXIT_ERROR, StartupError, preflight

    path = args.config or (DEMO_CONFIG if args.demo else DEFAULT_CONFIG)
    setup_logging(args.log_level or "info")
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG  # systemd's RestartPreventExitStatus can tell it from a crash
    setup_logging(args.log_level or config.logging.level)
    try:
        with InstanceLock(config.storage.path.parent):
            preflight(config)
            asyncio.run(Agent(config, demo=args.demo, config_path=path).run())
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return exc.exit_code
    except StorageError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CANTCREAT
    except O2OEdgeError as exc:
        log.error("cannot run: %s", exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "hash-password":
        return _hash_password(args.user, args.role)
    if args.command == "ops":
        from agent.ops.cli import run as run_ops

        return run_ops(args)
    if args.command == "ndsctl-helper":
        from drivers.wifi.ndsctl_helper import run as run_ndsctl_helper

        return run_ndsctl_helper(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
