"""A fleet of 500 gateways on a local broker, measured (docs/ops.md, "A fleet of 500").

Run through `scripts/fleet [options]`. Loopback only, bounded in time (--deadline) and memory
(--max-mem-mb, the run's processes summed), and it stops everything it started on success, failure,
Ctrl-C or SIGTERM (children are also killed by the kernel if this process dies: scripts/fleetsim/procs.py).

    scripts/fleet                      500 gateways on mosquitto: 16 real daemons, the rest light
    scripts/fleet --real 4 --total 100 smaller
    scripts/fleet --ejabberd           the same fleet on a two-node ejabberd cluster (mod_mqtt), half on each
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.fleetsim.procs import Broker, EjabberdCluster, Mosquitto, rss_kb, tree_rss_kb  # noqa: E402
from scripts.fleetsim.scenario import Plan, Results, render, run_scenario  # noqa: E402


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--total", type=int, default=500, help="gateways in the fleet (default 500)")
    p.add_argument("--real", type=int, default=16, help="of them real `o2o-edge run` daemons (default 16)")
    p.add_argument("--workers", type=int, default=2, help="processes for the light gateways (default 2)")
    p.add_argument("--rate", type=float, default=5.0, help="events/s per light gateway (default 5)")
    p.add_argument("--ramp", type=float, default=10.0, help="light gateways start over this many s (default 10)")
    p.add_argument("--steady", type=float, default=20.0, help="seconds of steady traffic measured (default 20)")
    p.add_argument("--down", type=float, default=5.0, help="seconds the broker is down in the restart (default 5)")
    p.add_argument("--no-restart", action="store_true", help="skip the broker restart")
    p.add_argument("--max-queued", type=int, default=10000, metavar="N",
                   help="mosquitto's max_queued_messages (default 10000; mosquitto's own default is 1000, "
                        "too few for `ops` on 500 gateways: docs/ops.md)")
    p.add_argument("--ejabberd", action="store_true", help="a two-node ejabberd cluster instead of mosquitto")
    p.add_argument("--nodes", type=int, default=2, help="ejabberd nodes (default 2; 1: a single node)")
    p.add_argument("--deadline", type=float, default=600.0, help="the whole run, seconds (default 600)")
    p.add_argument("--max-mem-mb", type=int, default=6144, help="the run's processes together (default 6144)")
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)  # scripts/fleet makes it (and cleans up)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return p.parse_args(argv)


async def watchdog(workdir: Path, max_kb: int) -> str:
    """Returns (ending the run) when the run's processes use more than `max_kb` together."""
    while True:
        await asyncio.sleep(2)
        try:
            pgids = {int(x) for x in (workdir / "pgids").read_text().split()}
        except OSError:
            pgids = set()
        used = tree_rss_kb(pgids) + rss_kb(os.getpid())
        if used > max_kb:
            return f"memory bound: the run's processes use {used // 1024} MiB (> --max-mem-mb {max_kb // 1024})"


async def main_async(args: argparse.Namespace, workdir: Path) -> int:
    plan = Plan(total=args.total, real=args.real, workers=args.workers, rate=args.rate, ramp_s=args.ramp,
                steady_s=args.steady, down_s=args.down, restart=not args.no_restart and not args.ejabberd)
    broker: Broker
    cluster_note = ""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    stopping: list[str] = []

    def on_signal(name: str) -> None:
        stopping.append(name)
        main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig.name)

    broker_started = False
    if args.ejabberd:
        broker = EjabberdCluster(workdir, nodes=max(1, args.nodes))
    else:
        broker = Mosquitto(workdir, conf_extra=f"max_queued_messages {args.max_queued}\n")
    guard = asyncio.create_task(watchdog(workdir, args.max_mem_mb * 1024))
    try:
        async with asyncio.timeout(args.deadline):
            out(f"starting {broker.kind} {broker.version} …")
            await asyncio.to_thread(broker.start)
            broker_started = True
            if isinstance(broker, EjabberdCluster) and len(broker.nodes) > 1:
                if await asyncio.to_thread(broker.form_cluster):
                    cluster_note = (f"cluster formed: {', '.join(broker.list_cluster())} (ejabberdctl list_cluster); "
                                    f"even gateways on {broker.nodes[0].node}, odd on {broker.nodes[1].node}; "
                                    f"`ops push` talks to node 1, `ops fleet` to node 2")
                else:
                    cluster_note = f"NO CLUSTER: {broker.cluster_error}; single-node run on {broker.nodes[0].node}"
                out(cluster_note)
            scenario = asyncio.create_task(run_scenario(plan, broker, workdir, out))
            done, _ = await asyncio.wait({scenario, guard}, return_when=asyncio.FIRST_COMPLETED)
            if guard in done:
                scenario.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scenario
                out(f"scripts/fleet: stopped: {guard.result()}")
                return 1
            results: Results = scenario.result()
    except TimeoutError:
        out(f"scripts/fleet: stopped: the run took longer than --deadline {args.deadline:g} s")
        return 1
    except asyncio.CancelledError:
        out(f"scripts/fleet: stopped by {stopping[0] if stopping else 'cancellation'}")
        return 130
    except RuntimeError as exc:
        out(f"scripts/fleet: failed: {exc}")
        return 1
    finally:
        guard.cancel()
        if broker_started or isinstance(broker, EjabberdCluster):
            await asyncio.to_thread(broker.stop)
    out("")
    out(" ".join(["$ scripts/fleet", *(shlex.quote(a) for a in args.argv)]))
    out(f"machine: {os.cpu_count()} cores, {_mem_total_gib():.1f} GiB RAM; {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if cluster_note:
        out(cluster_note)
    for line in render(results, plan):
        out(line)
    if args.json:
        args.json.write_text(json.dumps({"plan": asdict(plan), "results": asdict(results),
                                         "cluster": cluster_note}, indent=1))
    ok = results.push_applied == plan.total and results.fleet_listed == plan.total and (
        results.fleet_desired == plan.total) and (
        not plan.restart or results.storm_back == plan.total)
    return 0 if ok else 1


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def die_with_parent() -> None:
    """SIGTERM (a clean stop) when the process that started us dies (scripts/fleet's `timeout`, killed)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse(raw)
    # the command as typed (scripts/fleet adds --workdir DIR)
    args.argv = [a for i, a in enumerate(raw) if a != "--workdir" and (i == 0 or raw[i - 1] != "--workdir")]
    if args.workdir is not None:
        die_with_parent()
        args.workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(main_async(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="o2o-fleet-") as tmp:
        return asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
