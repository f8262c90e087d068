"""scripts/chaos: the real daemon, a real mosquitto and simulated readers, under faults. Loopback only, bounded.

    scripts/chaos                       100 broker restarts, 20 kill -9, and every other fault, within --minutes
    scripts/chaos --ci                  the short variant (tests/test_chaos.py runs it: under 3 minutes)
    scripts/chaos --broker-restarts N --kills N --minutes M --seed S --keep

Simulated readers (three protocols, on ptys this script owns) feed the daemon steadily, the daemon runs as a
process (`o2o-edge run`) and syncs to a mosquitto this script starts on a free loopback port; a cloud
subscriber with a persistent session records what arrives. Then, in random order and at random moments:
the broker stops and starts again; the daemon is killed with SIGKILL (mid-commit, mid-drain, right after a
config push) and restarted; a reader's pty is unplugged and plugged back; the outbox's disk fills until the
drop policy acts (a tmpfs this script mounts when it runs as root, else the outbox's byte cap) and is freed;
config pushes arrive valid, invalid, stale, unsigned and badly signed; junk on every downlink topic; random
and mutated bytes on a reader; hostile HTTP (slow headers, slow bodies, oversized and malformed requests, a
header flood). At the end everything is healed, the outbox drains, the daemon stops, and one table says:
events produced (every id seen committed in the outbox, sampled, or delivered) against delivered (unique ids),
dropped by the policy (the outbox's own lifetime counters), still waiting, and unexplained losses (must be 0);
duplicates; integrity checks after every kill; memory and open files over time; the config in force against
the last valid push. Exit status 1 on any unexplained loss, failed integrity check, wrong config or unbounded
memory; 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.rfid.simulator import PtySimulator, ShopfloorScenario  # noqa: E402

EXE = str(Path(sys.executable).with_name("o2o-edge"))
STORE, GATEWAY = "chaos", "gw-1"
BASE = f"o2o/v1/{STORE}/{GATEWAY}"
READERS = (("r-mercury", "mercury", 115200), ("r-uhf18", "uhfreader18", 57600), ("r-r2000", "r2000", 115200))
DOWNLINK = ("config/set", "config/patch", "catalog/set", "sold/add", "members/set", "campaigns/set", "collect/add",
            "collect/cancel", "qr/set", "cmd/ping", "cmd/status", "cmd/resync", "cmd/no-such-command")
MEMORY_BOUND_MIB = 200  # systemd's MemoryMax is 256M
FDS_BOUND = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chaos: {msg}", flush=True)


class Broker:
    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.conf = work / "mosquitto.conf"
        (work / "mosquitto").mkdir(exist_ok=True)
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {work}/mosquitto/\nautosave_interval 0\n"
                             "max_inflight_messages 0\nmax_queued_messages 0\nmessage_size_limit 0\n"
                             f"log_dest file {work / 'mosquitto.log'}\n" + ("user root\n" if os.geteuid() == 0 else ""))
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Cloud:
    """The cloud side: a persistent QoS 1 session on `events` (what was sent while it reconnects waits for it)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.ids: Counter[str] = Counter()
        self.messages = 0
        self.backlog_batches = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="chaos-cloud",
                                  protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{BASE}/events", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        if payload[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=64 << 20)
        elif payload[:1] == b"\x78":
            import zlib

            payload = zlib.decompress(payload)
        doc = json.loads(payload)
        with self.lock:
            self.messages += 1
            self.backlog_batches += bool(doc.get("backlog"))
            self.ids.update(e["id"] for e in doc["events"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Daemon:
    def __init__(self, config: Path, http_port: int, work: Path) -> None:
        self.config, self.http_port, self.work = config, http_port, work
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stderr = (work / "daemon.log").open("ab")

    def start(self) -> None:
        self.proc = subprocess.Popen([EXE, "run", "--config", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode} (see {self.work / 'daemon.log'})")
            with contextlib.suppress(OSError):
                if http_get(self.http_port, "/healthz")[0] in (200, 503):
                    return
            time.sleep(0.05)
        raise RuntimeError("the daemon did not answer /healthz within 30 s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        return self.proc.wait(15)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


class Sampler(threading.Thread):
    """Every committed id it can see (new rows since the last look, 5 times a second), RSS and open files."""

    def __init__(self, db: Path, daemon: Daemon) -> None:
        super().__init__(daemon=True, name="sampler")
        self.db, self.d = db, daemon
        self.seen: set[str] = set()
        self.rss: list[float] = []
        self.fds: list[int] = []
        self.stop = threading.Event()
        self._last = 0

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            self.look()
            if tick % 5 == 0 and (pid := self.d.pid) is not None:
                with contextlib.suppress(OSError, ValueError, IndexError):  # (a process on its way out)
                    status = Path(f"/proc/{pid}/status").read_text()
                    self.rss.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
                    self.fds.append(len(os.listdir(f"/proc/{pid}/fd")))
            tick += 1
            self.stop.wait(0.2)

    def look(self) -> None:
        if not self.db.exists():
            return
        try:
            conn = sqlite3.connect(self.db, timeout=1)
            try:
                rows = conn.execute("SELECT seq, id FROM outbox WHERE seq > ?", (self._last,)).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return
        for seq, id_ in rows:
            self.seen.add(id_)
            self._last = max(self._last, seq)


def integrity(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return bool(conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
    finally:
        conn.close()


def outbox_meta(db: Path) -> tuple[dict[str, int], set[str]]:
    conn = sqlite3.connect(db)
    try:
        meta = dict(conn.execute("SELECT key, value FROM outbox_meta"))
        waiting = {i for (i,) in conn.execute("SELECT id FROM outbox")}
    finally:
        conn.close()
    return meta, waiting


class Pusher:
    """Config pushes as central ops (and an attacker) send them."""

    def __init__(self, port: int, rng: random.Random) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from agent.ops.keys import public_key_b64

        self.port, self.rng = port, rng
        self.key = Ed25519PrivateKey.generate()
        self.public = public_key_b64(self.key)
        self.version = 0  # the last valid version pushed
        self.sent: Counter[str] = Counter()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, patient: bool = False) -> bool:
        """Publish (QoS 1); `patient`: retry while the broker is away, as ops tooling does (bounded)."""
        import paho.mqtt.publish as publish

        deadline = time.monotonic() + (20 if patient else 0)
        while True:
            try:
                publish.single(f"{BASE}/{topic}", payload, qos=1, retain=retain, hostname="127.0.0.1", port=self.port)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)

    def signed(self, doc: dict[str, Any]) -> bytes:
        from agent.ops.keys import sign

        return json.dumps(sign(doc, self.key)).encode()

    def push_all_kinds(self) -> None:
        """One valid patch, then invalid, stale, unsigned and badly signed ones (the valid one stays in force)."""
        # Retained, as ops publish a desired state: a gateway that is down or reconnecting gets it when it is back.
        valid = {"version": self.version + 1, "rfid": {"gone_after_s": self.rng.choice((0.5, 0.6, 0.7))}}
        if self.publish("config/patch", self.signed(valid), retain=True, patient=True):
            self.version += 1
            self.sent["valid"] += 1
        self.publish("config/patch", self.signed({"version": self.version + 100, "rfid": {"gone_after_s": -1}}))
        self.publish("config/patch", self.signed({"version": max(1, self.version - 1), "rfid": {"gone_after_s": 2}}))
        self.publish("config/patch", json.dumps({"version": self.version + 200, "rfid": {"gone_after_s": 2}}).encode())
        forged = {"version": self.version + 300, "rfid": {"gone_after_s": 2},
                  "signature": base64.b64encode(os.urandom(64)).decode()}
        self.publish("config/patch", json.dumps(forged).encode())
        self.sent.update(("invalid", "stale", "unsigned", "bad signature"))

    def junk(self) -> None:
        for topic in DOWNLINK:
            for payload in (os.urandom(self.rng.randint(0, 300)), b"{", b"[]", b'{"version": "x"}', b"\x00" * 5000):
                self.publish(topic, payload)
                self.sent["junk"] += 1


def garbage_on_a_reader(sims: list[PtySimulator], rng: random.Random) -> int:
    sim = rng.choice(sims)
    total = 0
    for _ in range(5):
        blob = bytearray(os.urandom(rng.randint(1, 200)))
        sim.inject(bytes(blob))
        total += len(blob)
    return total


def hostile_http(port: int, rng: random.Random) -> int:
    """Slow headers, a slow body, oversized and malformed requests; returns how many connections were made."""
    made = 0
    socks = []
    for payload in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{",
                    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"\x16\x03\x01 not http at all\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nX: " + b"b" * 100_000 + b"\r\n\r\n", b"GET /portal/?fas=%%% HTTP/1.0\r\n\r\n"):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(payload)
            socks.append(s)
            made += 1
    time.sleep(rng.uniform(0.2, 1.0))
    for s in socks:
        s.close()
    return made


def header_flood(port: int, rounds: int, parallel: int) -> None:
    def one() -> None:
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(16):
                s.sendall(b"a" * 65536)
            s.recv(100)
            s.close()

    for _ in range(rounds):
        threads = [threading.Thread(target=one) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)


class Disk:
    """The outbox's directory: a size-limited tmpfs as root (filled with a ballast file), else a plain directory
    (the outbox's byte cap is what fills)."""

    SIZE_MIB = 32

    def __init__(self, work: Path) -> None:
        self.path = work / "storage"
        self.path.mkdir()
        self.mounted = False
        if os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE_MIB}m", "tmpfs", str(self.path)],
                                  capture_output=True, text=True)
            self.mounted = done.returncode == 0
        self.ballast = self.path / "ballast"

    def fill(self) -> None:
        with self.ballast.open("ab") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


def write_config(work: Path, disk: Disk, http_port: int, broker: int, ports: list[str], public_key: str) -> Path:
    import tomli_w

    readers = [{"id": rid, "port": port, "protocol": proto, "baudrate": baud, "zones": {"1": f"{rid}-a", "2": f"{rid}-b"}}
               for (rid, proto, baud), port in zip(READERS, ports, strict=True)]
    doc = {
        "store": {"id": STORE, "gateway": GATEWAY},
        "storage": {"path": str(disk.path / "o2o-edge.db")},
        "http": {"listen": f"127.0.0.1:{http_port}", "api_token": "chaos-token"},
        "mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0,
                 "config_public_key": public_key},
        # The cap fills first without a tmpfs; with one, the disk does (the cap is larger than the disk).
        "outbox": {"max_bytes": (256 if disk.mounted else 4) * 1024 * 1024},
        "rfid": {"gone_after_s": 0.5, "keep_raw_reads": True, "readers": readers},
    }
    path = work / "o2o-edge.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


class Run:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.rng = random.Random(args.seed)
        self.broker = Broker(work)
        self.disk = Disk(work)
        self.db = self.disk.path / "o2o-edge.db"
        self.sims = [PtySimulator(proto, ShopfloorScenario(tags=30, seed=i), link=work / "dev" / rid, period_s=0.05)
                     for i, (rid, proto, _) in enumerate(READERS)]
        self.http_port = free_port()
        self.counts: Counter[str] = Counter()
        self.integrity: list[bool] = []
        self.flood: tuple[float, float, float] | None = None
        self.deadline = time.monotonic() + args.minutes * 60

    def setup(self) -> None:
        self.broker.start()
        self.cloud = Cloud(self.broker.port)
        ports = [sim.start() for sim in self.sims]
        self.pusher = Pusher(self.broker.port, self.rng)
        config = write_config(self.work, self.disk, self.http_port, self.broker.port, ports, self.pusher.public)
        self.daemon = Daemon(config, self.http_port, self.work)
        self.daemon.start()
        self.sampler = Sampler(self.db, self.daemon)
        self.sampler.start()
        time.sleep(2)

    def status(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            return http_get(self.http_port, "/api/status", "chaos-token")[1]
        return None

    # -- the faults ------------------------------------------------------------------------------

    def broker_restart(self) -> None:
        self.broker.stop()
        time.sleep(self.rng.uniform(*self.args.downtime))
        self.broker.start()
        self.counts["broker restarts"] += 1

    def kill(self) -> None:
        moment = self.rng.choice(("mid-commit", "mid-drain", "mid-config-push"))
        if moment == "mid-drain":  # a backlog, then the broker back: kill while it drains
            self.broker.stop()
            time.sleep(self.rng.uniform(0.5, 2.0))
            self.broker.start()
            time.sleep(self.rng.uniform(0.05, 0.5))
        elif moment == "mid-config-push":
            self.pusher.push_all_kinds()
            time.sleep(self.rng.uniform(0, 0.2))
        else:
            time.sleep(self.rng.uniform(0, 0.3))
        self.daemon.kill9()
        self.integrity.append(integrity(self.db))
        self.sampler.look()
        self.counts[f"kill -9 ({moment})"] += 1
        self.counts["kill -9"] += 1
        self.daemon.start()

    def replug(self) -> None:
        sim = self.rng.choice(self.sims)
        sim.unplug()
        time.sleep(self.rng.uniform(0.3, 1.5))
        sim.plug()
        self.counts["reader unplug/replug"] += 1

    def fill_disk(self) -> None:
        """Until the drop policy acts: a ballast on the tmpfs, or the broker away while the byte cap fills."""
        before = self.dropped()
        self.broker.stop()
        down_at = time.monotonic()
        if self.disk.mounted:
            self.disk.fill()
        deadline = time.monotonic() + 60
        while self.dropped() == before and time.monotonic() < deadline:
            time.sleep(0.5)
        # An outage longer than [mqtt] live_age_s: the broker comes back to a backlog (sent marked, live first).
        time.sleep(max(0.0, 7.0 - (time.monotonic() - down_at)))
        acted = self.dropped() > before
        self.counts["disk fills (drop policy acted)" if acted else "disk fills (drop policy did NOT act)"] += 1
        status = self.status() or {}
        if self.disk.mounted and (status.get("health") or {}).get("level") == "red":
            self.counts["full disk shown red"] += 1
        self.disk.free()
        self.broker.start()

    def dropped(self) -> int:
        with contextlib.suppress(sqlite3.Error):
            meta, _ = outbox_meta(self.db)
            return sum(v for k, v in meta.items() if k.startswith("dropped_"))
        return 0

    def reader_garbage(self) -> None:
        self.counts["garbage bytes on readers"] += garbage_on_a_reader(self.sims, self.rng)

    def http(self) -> None:
        self.counts["hostile HTTP connections"] += hostile_http(self.http_port, self.rng)

    def pushes(self) -> None:
        self.pusher.push_all_kinds()
        self.pusher.junk()

    # -- the schedule ------------------------------------------------------------------------------

    def run(self) -> None:
        cycles = self.args.broker_restarts
        kill_at = set(self.rng.sample(range(cycles), min(self.args.kills, cycles)))
        others = [self.replug, self.reader_garbage, self.http, self.pushes]
        fill_at = set(self.rng.sample(range(cycles), min(self.args.disk_fills, cycles)))
        for cycle in range(cycles):
            if time.monotonic() > self.deadline:
                log(f"time is up after {cycle} cycle(s)")
                break
            self.broker_restart()
            if cycle in kill_at:
                self.kill()
            if cycle in fill_at:
                self.fill_disk()
            self.rng.choice(others)()
            if cycle % 10 == 0:
                log(f"cycle {cycle + 1}/{cycles}: {dict(self.counts)}")
        self.pushes()
        self.http()
        self.flood_memory()

    def flood_memory(self) -> None:
        pid = self.daemon.pid
        if pid is None:
            return
        def rss() -> float:
            return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024

        before = rss()
        peak = before
        for _ in range(self.args.flood_rounds):
            header_flood(self.http_port, 1, 200)
            peak = max(peak, rss())
        time.sleep(3)
        self.flood = (before, peak, rss())

    # -- the end ---------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Heal everything, let the outbox drain, stop the daemon, and account for every event."""
        self.disk.free()
        if self.broker.proc is None:
            self.broker.start()
        for sim in self.sims:
            sim.unplug()  # no new reads: the outbox can drain to empty
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = self.status()
            if st and st["outbox"]["depth"] == 0 and st["mqtt"]["connected"]:
                break
            time.sleep(0.5)
        final = self.status() or {}
        rc = self.daemon.stop()
        self.sampler.stop.set()
        self.sampler.join(5)
        self.sampler.look()
        time.sleep(2)  # the cloud's last PUBLISHes
        self.integrity.append(integrity(self.db))
        meta, waiting = outbox_meta(self.db)
        with self.cloud.lock:
            delivered = set(self.cloud.ids)
            copies = sum(self.cloud.ids.values())
        produced = self.sampler.seen | delivered
        dropped = sum(v for k, v in meta.items() if k.startswith("dropped_"))
        missing = produced - delivered - waiting
        return {
            "produced": len(produced), "delivered": len(delivered), "duplicates": copies - len(delivered),
            "dropped": dropped, "dropped_by": {k[8:]: v for k, v in meta.items() if k.startswith("dropped_")},
            "waiting": len(waiting), "missing": len(missing), "unexplained": max(0, len(missing) - dropped),
            "integrity_ok": sum(self.integrity), "integrity_runs": len(self.integrity), "exit_code": rc,
            "config_version": ((final.get("config") or {}).get("version")), "last_valid": self.pusher.version,
            "backlog_batches": self.cloud.backlog_batches, "messages": self.cloud.messages,
        }

    def close(self) -> None:
        for sim in self.sims:
            with contextlib.suppress(OSError):
                sim.unplug()
        with contextlib.suppress(Exception):
            self.cloud.close()
        if getattr(self, "daemon", None) is not None and self.daemon.pid is not None:
            self.daemon.proc.kill()  # type: ignore[union-attr]
        self.broker.stop()
        self.disk.close()


def table(run: Run, r: dict[str, Any], elapsed: float) -> tuple[str, bool]:
    rss, fds = run.sampler.rss or [0.0], run.sampler.fds or [0]
    checks = [
        ("events produced (ids seen committed, or delivered)", f"{r['produced']:,}", True),
        ("delivered to the broker (unique ids)", f"{r['delivered']:,}", True),
        ("dropped by the policy (counted)", f"{r['dropped']:,} {r['dropped_by']}", True),
        ("waiting in the outbox at the end", f"{r['waiting']:,}", True),
        ("unexplained losses", f"{r['unexplained']:,}", r["unexplained"] == 0),
        ("duplicates (redelivered unacknowledged batches)", f"{r['duplicates']:,} in {r['messages']:,} messages", True),
        ("integrity checks (after each kill -9 and at the end)", f"{r['integrity_ok']}/{r['integrity_runs']} ok",
         r["integrity_ok"] == r["integrity_runs"]),
        ("daemon RSS MiB (min / median / max)", f"{min(rss):.0f} / {statistics.median(rss):.0f} / {max(rss):.0f}",
         max(rss) < MEMORY_BOUND_MIB),
        ("daemon open files (min / max)", f"{min(fds)} / {max(fds)}", max(fds) < FDS_BOUND),
        ("config in force / last valid push", f"{r['config_version']} / {run.pusher.version}",
         r["config_version"] == run.pusher.version),
        ("clean stop at the end (exit code)", str(r["exit_code"]), r["exit_code"] == 0),
    ]
    if run.flood is not None:
        before, peak, after = run.flood
        checks.append(("header flood RSS MiB (before / peak / 3 s after)", f"{before:.0f} / {peak:.0f} / {after:.0f}",
                       after < before + 20))
    for name, n in sorted(run.counts.items()):
        checks.append((name, f"{n:,}", "did NOT act" not in name))
    for kind, n in sorted(run.pusher.sent.items()):
        checks.append((f"config pushes / downlink: {kind}", f"{n:,}", True))
    checks.append(("backlog batches marked \"backlog\": true", f"{r['backlog_batches']:,}", True))
    checks.append(("duration", f"{elapsed:.0f} s ({'tmpfs ' + str(Disk.SIZE_MIB) + ' MiB' if run.disk.mounted else 'byte cap'})", True))
    width = max(len(c[0]) for c in checks)
    lines = [f"| {'check':<{width}} | result | ok |", f"|{'-' * (width + 2)}|--------|----|"]
    lines += [f"| {name:<{width}} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
    return "\n".join(lines), all(ok for _, _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", action="store_true", help="the short variant (under 3 minutes)")
    parser.add_argument("--broker-restarts", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--disk-fills", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=30.0, help="a bound: the faults stop after this long")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    parser.add_argument("--report", type=Path, help="also write the table to this Markdown file (default: "
                        "var/chaos/report.md, which scripts/bench puts in its report; none for --ci)")
    args = parser.parse_args()
    logging.getLogger("paho").setLevel(logging.CRITICAL)  # "not connected" while the broker is down on purpose
    args.downtime = (0.2, 4.0)
    args.flood_rounds = 5
    if args.report is None and not args.ci:
        args.report = ROOT / "var" / "chaos" / "report.md"
    if args.ci:
        args.broker_restarts, args.kills, args.disk_fills, args.minutes = 20, 5, 1, 2.0
        args.downtime, args.flood_rounds = (0.1, 0.6), 2
    work = Path(tempfile.mkdtemp(prefix="o2o-chaos-"))
    log(f"seed {args.seed}, work directory {work}")
    run = Run(args, work)
    t0 = time.monotonic()
    try:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
        try:
            run.setup()
        except (RuntimeError, OSError) as exc:
            log(f"cannot set up: {exc}")
            return 2
        run.run()
        result = run.finish()
    finally:
        run.close()
    text, ok = table(run, result, time.monotonic() - t0)
    print(text, flush=True)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(f"## scripts/chaos (seed {args.seed}; {args.broker_restarts} broker restarts, "
                               f"{args.kills} kill -9)\n\n{text}\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"kept {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
