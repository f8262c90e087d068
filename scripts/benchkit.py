"""What every benchmark shares: a figure with the machine's own limit next to it, medians of 3, loud failures,
a local mosquitto, the machine's description and limits, and the Markdown report (scripts/bench.py runs them)."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T = TypeVar("T")
RUNS = 3  # every figure is the median of this many runs


class BenchError(AssertionError):
    """A figure whose input was not all processed (bytes dropped, events missing): no number is printed for it."""


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    target: str = ""
    ok: bool | None = None  # against the target, when it can be checked
    issue: str = ""  # the issue that asked for it
    runs: list[float] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.name:<58} FAILED: {self.error}"
        ref = ""
        if self.reference:
            ref = f"  | {self.reference_name}: {fmt(self.reference)} {self.unit} -> {self.value / self.reference:.0%}"
        tgt = f"  | target {self.target}{'' if self.ok is None else ' ok' if self.ok else ' MISSED'}" if self.target else ""
        return f"{self.name:<58} {fmt(self.value):>14} {self.unit}{ref}{tgt}"


def fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"


def median_of(fn: Callable[[], T], n: int = RUNS) -> tuple[T, list[T]]:
    """The median run (by value for numbers, else by its first element) and all of them."""
    runs = [fn() for _ in range(n)]
    ordered = sorted(runs, key=lambda r: r if isinstance(r, int | float) else r[0])  # type: ignore[index]
    return ordered[len(ordered) // 2], runs


def require(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto on a free loopback port, no persistence, no queue limits."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_inflight_messages 0\nmax_queued_messages 0\nmessage_size_limit 0\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        self.cmd = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self) -> None:
        """(Again) on the same port."""
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(250):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def written_bytes(pid: int) -> int:
    """Bytes the process sent to the storage layer (what wears an SD card)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the machine ---------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")).split()[1]) // 1024
    return {"host": platform.node(), "cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem:,} MiB",
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "kernel": platform.release()}


def disk_limits(directory: Path | None = None) -> dict[str, float]:
    """Sequential write MB/s and fsyncs/s where the benchmarks keep their files, measured now."""
    with tempfile.TemporaryDirectory(dir=directory) as d:
        path = Path(d) / "probe"
        block = os.urandom(1 << 20)
        t0 = time.perf_counter()
        with path.open("wb") as f:
            for _ in range(64):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        mbps = 64 / (time.perf_counter() - t0)
        fd = os.open(path, os.O_WRONLY)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 1.0:
            os.pwrite(fd, b"x" * 4096, 0)
            os.fsync(fd)
            n += 1
        os.close(fd)
        return {"write_mb_s": mbps, "fsync_per_s": n / (time.perf_counter() - t0)}


def cpu_limit() -> float:
    """Simple Python operations per second on one core (a loop of additions), to compare machines."""
    t0 = time.perf_counter()
    x = 0
    for i in range(5_000_000):
        x += i
    return 5_000_000 / (time.perf_counter() - t0)


def report(figures: list[tuple[str, Figure]], path: Path, limits: dict[str, float], pngs: list[Path],
           extras: list[Path] | None = None) -> None:
    m = machine()
    lines = [
        "# o2o-edge benchmark report", "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `scripts/bench` on **{m['host']}**: {m['cpu']}, "
        f"{m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}.",
        "",
        "The machine's limits, measured in the same run: "
        f"{limits['write_mb_s']:,.0f} MB/s sequential write and {limits['fsync_per_s']:,.0f} fsync/s where the "
        f"benchmarks keep their files, {limits['py_ops_s'] / 1e6:,.1f} M Python additions/s on one core. "
        f"Every figure is the median of {RUNS} runs; each has the reference it is compared with, measured in the "
        "same run on this machine.", "",
        "| group | figure | value | reference (this machine, same run) | ratio | target | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, f in figures:
        if f.error is not None:
            lines.append(f"| {group} | {f.name} | **FAILED**: {f.error} | | | {f.target} | no |")
            continue
        ref = f"{f.reference_name}: {fmt(f.reference)} {f.unit}" if f.reference else ""
        ratio = f"{f.value / f.reference:.0%}" if f.reference else ""
        ok = "" if f.ok is None else "yes" if f.ok else "**no**"
        lines.append(f"| {group} | {f.name} | {fmt(f.value)} {f.unit} | {ref} | {ratio} | {f.target} | {ok} |")
    for extra in extras or []:  # the last scripts/chaos and scripts/soak reports, when they exist
        lines += ["", extra.read_text().replace("](soak.png)", f"]({os.path.relpath(extra.parent, path.parent)}/soak.png)")]
    for png in pngs:
        lines += ["", f"![{png.stem}]({os.path.relpath(png, path.parent)})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def median(values: list[float]) -> float:
    return statistics.median(values)
