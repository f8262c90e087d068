"""scripts/soak: the daemon at a store's load for a long while, its memory, CPU, files and backlog drawn.

    scripts/soak                 30 minutes (the default)
    scripts/soak --minutes 5     shorter

Ten simulated readers deliver 2,000 tag reads/s in total the way a UART does (a few reads every ~2 ms, tags
coming and going), a replayed capture brings 300 BLE advertising reports/s, sync runs against a local
mosquitto that drops out for 20 s every 3 minutes, and five staff pages stay open in headless Chromium. Every
5 s: RSS, CPU, open files, outbox depth. The report (var/soak/report.md, var/soak/soak.png; scripts/bench
puts the plot in its report) gives the slope of memory over the last 20 minutes (or the last two thirds of a
shorter run) against the noise around it. Exit 1 when memory grows beyond the noise, a read was dropped or the
backlog did not drain after the last outage. Loopback only; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cpu import EXE, Feeder, _status
from benchkit import ROOT, Broker, cpu_seconds, free_port, rss_mib

READERS = 10
READS_PER_S = 2000
BLE_PER_S = 300
SAMPLE_S = 5.0
OUTAGE_EVERY_S, OUTAGE_S = 180.0, 20.0
PAGES = 5


class SlidingFeeder(Feeder):
    """A Feeder whose tags change: every 2 s one of the `tags` in the field leaves and another comes, from a pool
    twice that size (so the outbox gets a steady trickle of tag.seen and tag.gone, and a backlog in an outage)."""

    def __init__(self, master: int, rate: float, tags: int, seed: int) -> None:
        super().__init__(master, rate, 2 * tags, seed)
        self.field = tags

    def run(self) -> None:
        t0 = time.perf_counter()
        pool = list(self.frames)
        shift, i = -1, 0
        window: list[bytes] = []
        while not self.stop.is_set():
            now = int((time.perf_counter() - t0) / 2) % len(pool)
            if now != shift:
                shift = now
                window = [pool[(shift + k) % len(pool)] for k in range(self.field)]
            due = int((time.perf_counter() - t0) * self.rate)
            if due > self.sent:
                chunk = b"".join(window[(i + k) % self.field] for k in range(due - self.sent))
                i += due - self.sent
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.master, view):]
                self.sent = due
            time.sleep(0.002)


def ble_capture(path: Path, seconds: int = 60) -> None:
    """BLE_PER_S reports/s from 30 beacons (10 Hz each), for `seconds`, replayed in a loop."""
    import math

    from drivers.ble.beacons import encode_ibeacon
    from drivers.ble.captures import CapturedPacket, write_btsnoop
    from drivers.ble.hci import encode_adv_report

    packets = []
    step = 1 / BLE_PER_S
    for i in range(seconds * BLE_PER_S):
        beacon = i % 30
        rssi = -70 + 15 * math.sin(i / 500 + beacon)
        packets.append(CapturedPacket(1_763_900_000 + i * step, encode_adv_report(
            f"C0:DE:00:00:01:{beacon:02X}", encode_ibeacon("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, beacon, -59),
            round(rssi))))
    with path.open("wb") as f:
        write_btsnoop(f, packets)


def config(work: Path, ports: list[str], broker: int, http: int, capture: Path) -> Path:
    import tomli_w

    from agent.web.auth import hash_password

    doc = {
        "store": {"id": "soak", "gateway": "gw-1"},
        "storage": {"path": str(work / "o2o-edge.db")},
        "http": {"listen": f"127.0.0.1:{http}", "api_token": "b",
                 "users": [{"name": "staff", "role": "admin", "password_hash": hash_password("soak-pass")}]},
        "mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_min_s": 0.5, "reconnect_max_s": 5.0},
        "rfid": {"gone_after_s": 3.0, "readers": [
            {"id": f"r{i}", "port": p, "protocol": "mercury", "baudrate": 921600, "zones": {"1": f"z{i}a", "2": f"z{i}b"}}
            for i, p in enumerate(ports)]},
        "ble": {"source": f"replay:{capture}?loop", "beacons": [
            {"id": f"b{m}", "ibeacon": {"uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e", "major": 1, "minor": m}}
            for m in range(30)]},
    }
    path = work / "o2o-edge.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def open_pages(base: str, n: int, work: Path) -> list[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
    pages = []
    for i in range(n):
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                     "--disable-background-networking", f"--user-data-dir={work / f'chromium-{i}'}"):
            options.add_argument(flag)
        options.binary_location = chromium
        page = webdriver.Chrome(service=Service(driver), options=options)
        page.get(f"{base}/login")
        page.find_element(By.ID, "username").send_keys("staff")
        page.find_element(By.ID, "password").send_keys("soak-pass")
        page.find_element(By.ID, "submit").click()
        WebDriverWait(page, 30).until(lambda d: d.find_elements(By.ID, "health"))
        pages.append(page)
    return pages


def slope(rows: list[dict[str, float]], window_s: float) -> tuple[float, float, float]:
    """Memory slope (MiB/h) over the last `window_s` by least squares, the growth it means over the window, and
    the noise (standard deviation of the residuals, MiB)."""
    end = rows[-1]["t"]
    pts = [(r["t"], r["rss"]) for r in rows if r["t"] >= end - window_s]
    if len(pts) < 3:
        return 0.0, 0.0, 0.0
    mt, mr = statistics.fmean(t for t, _ in pts), statistics.fmean(r for _, r in pts)
    k = sum((t - mt) * (r - mr) for t, r in pts) / sum((t - mt) ** 2 for t, _ in pts)
    noise = statistics.pstdev(r - (mr + k * (t - mt)) for t, r in pts)
    return k * 3600, k * (pts[-1][0] - pts[0][0]), noise


def plot(rows: list[dict[str, float]], outages: list[tuple[float, float]], path: Path) -> None:
    """scripts/soak_plot.py in .venv-plot: matplotlib (and numpy) stay out of the daemon's venv."""
    import json

    job = {"rows": rows, "outages": outages, "path": str(path),
           "title": f"o2o-edge soak: {READERS} readers, {READS_PER_S:,} reads/s, {BLE_PER_S} BLE reports/s, "
                    f"{PAGES} staff pages"}
    subprocess.run([str(ROOT / ".venv-plot" / "bin" / "python"), str(ROOT / "scripts" / "soak_plot.py")],
                   input=json.dumps(job), text=True, check=True, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "soak")
    parser.add_argument("--pages", type=int, default=PAGES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="o2o-soak-"))
    broker = Broker(work)
    ptys, feeders, pages = [], [], []
    proc: subprocess.Popen[bytes] | None = None
    rows: list[dict[str, float]] = []
    outages: list[tuple[float, float]] = []
    try:
        links = []
        for i in range(READERS):
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            (work / f"r{i}").symlink_to(os.ttyname(slave))
            ptys.append((master, slave))
            links.append(str(work / f"r{i}"))
        ble_capture(work / "ble.btsnoop")
        http = free_port()
        cfg = config(work, links, broker.port, http, work / "ble.btsnoop")
        proc = subprocess.Popen([EXE, "run", "--config", str(cfg)], stderr=(work / "daemon.log").open("wb"))
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if _status(http)["mqtt"]["connected"]:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                print(f"the daemon did not start (see {work / 'daemon.log'})", flush=True)
                return 2
            time.sleep(0.2)
        feeders = [SlidingFeeder(m, READS_PER_S / READERS, 100, i) for i, (m, _) in enumerate(ptys)]
        for f in feeders:
            f.start()
        pages = open_pages(f"http://127.0.0.1:{http}", args.pages, work)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_outage = t0 + OUTAGE_EVERY_S
        last_cpu, last_t = cpu_seconds(proc.pid), t0
        while time.monotonic() < end:
            time.sleep(SAMPLE_S)
            now = time.monotonic()
            if not broker.running and now >= outages[-1][1] + t0:
                broker.start()
            if now >= next_outage and now + OUTAGE_S + 30 < end:
                broker.stop()
                outages.append((now - t0, now - t0 + OUTAGE_S))
                next_outage = now + OUTAGE_EVERY_S
            st = _status(http)
            cpu = cpu_seconds(proc.pid)
            rows.append({"t": now - t0, "rss": rss_mib(proc.pid), "cpu": 100 * (cpu - last_cpu) / (now - last_t),
                         "fds": len(os.listdir(f"/proc/{proc.pid}/fd")), "depth": st["outbox"]["depth"],
                         "reads": sum(r["reads"] for r in st["readers"]), "ble": (st.get("ble") or {}).get("reports", 0)})
            last_cpu, last_t = cpu, now
        if not broker.running:
            broker.start()
        drained = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not drained:
            time.sleep(2)
            drained = _status(http)["outbox"]["depth"] < 2 * READS_PER_S  # what a few seconds of load leaves
        final = _status(http)
    finally:
        for page in pages:
            with contextlib.suppress(Exception):
                page.quit()
        for f in feeders:
            f.stop.set()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        broker.stop()
        for m, s in ptys:
            with contextlib.suppress(OSError):
                os.close(m)
                os.close(s)
    return write_report(args, rows, outages, final, drained, work)


def write_report(args: argparse.Namespace, rows: list[dict[str, float]], outages: list[tuple[float, float]],
                 final: dict[str, Any], drained: bool, work: Path) -> int:
    with (args.out / "samples.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, outages, args.out / "soak.png")
    window = min(20 * 60.0, rows[-1]["t"] * 2 / 3)
    k, growth, noise = slope(rows, window)
    overruns = sum(r["overruns"] for r in final["readers"])
    reads_per_s = (rows[-1]["reads"] - rows[0]["reads"]) / (rows[-1]["t"] - rows[0]["t"])
    flat = growth <= max(2.0, 3 * noise)
    lines = [
        f"## scripts/soak ({args.minutes:g} min)", "",
        f"{READERS} readers delivering {reads_per_s:,.0f} reads/s (target {READS_PER_S:,}), {BLE_PER_S} BLE "
        f"reports/s replayed, {args.pages} staff pages open, the broker away {OUTAGE_S:.0f} s every "
        f"{OUTAGE_EVERY_S / 60:.0f} min ({len(outages)} outages).", "",
        "| measure | value | ok |", "|---|---|---|",
        f"| RSS MiB: start / max / end | {rows[0]['rss']:.0f} / {max(r['rss'] for r in rows):.0f} / "
        f"{rows[-1]['rss']:.0f} | |",
        f"| memory slope over the last {window / 60:.0f} min | {k:+.2f} MiB/h ({growth:+.2f} MiB over the window; "
        f"noise {noise:.2f} MiB) | {'yes' if flat else '**no**'} |",
        f"| CPU % of a core: median / max | {statistics.median(r['cpu'] for r in rows):.0f} / "
        f"{max(r['cpu'] for r in rows):.0f} | |",
        f"| open files: min / max | {min(r['fds'] for r in rows):.0f} / {max(r['fds'] for r in rows):.0f} | |",
        f"| outbox depth: max (during outages) | {max(r['depth'] for r in rows):,.0f} | |",
        f"| backlog drained after the last outage | {'yes' if drained else 'no'} | {'yes' if drained else '**no**'} |",
        f"| serial bytes dropped | {overruns:,} | {'yes' if overruns == 0 else '**no**'} |",
        "", "![soak](soak.png)",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    ok = flat and drained and overruns == 0
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
