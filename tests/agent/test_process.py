"""The daemon as a process: `o2o-edge run`, signals, sd_notify, kill -9 durability."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import free_port

EXE = str(Path(sys.executable).with_name("o2o-edge"))


def write_config(tmp_path: Path, http_port: int, *, raw_reads: bool = True) -> Path:
    return conftest.write_config(
        tmp_path, store={"id": "proc-store", "gateway": "gw-1"},
        http={"listen": f"127.0.0.1:{http_port}", "api_token": "t0ken"},
        rfid={"gone_after_s": 0.5, "keep_raw_reads": raw_reads, "readers": [
            {"id": "floor", "port": "/dev/null", "protocol": "mercury", "baudrate": 115200, "zones": {1: "a", 2: "b"},
             "simulator": {"scenario": "shopfloor", "tags": 40, "period_s": 0.02}}]})


def get_json(url: str, token: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited early with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("agent did not answer /healthz")


def committed_rows(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT seq, id FROM outbox").fetchall())
    finally:
        conn.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def start(config: Path, procs: list[subprocess.Popen[bytes]], *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([EXE, "run", "--config", str(config), *extra], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    procs.append(p)
    return p


def test_sigterm_flushes_and_exits_within_5s(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    proc = start(config, procs, "--demo")
    wait_http(port, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and get_json(f"http://127.0.0.1:{port}/api/status", "t0ken")[1]["outbox"]["depth"] < 200:
        time.sleep(0.1)
    code, status = get_json(f"http://127.0.0.1:{port}/api/status", "t0ken")
    assert code == 200 and status["readers"][0]["state"] == "online"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 5.0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "stopped:" in stderr
    # what the hub had queued at the signal was committed, not lost: counts agree with the log line
    committed = int(stderr.split("stopped: ")[1].split(" event(s) committed")[0])
    assert len(committed_rows(tmp_path / "o2o.db")) == committed


def test_kill_9_loses_no_committed_event_and_leaves_a_sound_file(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    db = tmp_path / "o2o.db"
    for round_ in range(3):
        proc = start(config, procs, "--demo")
        wait_http(port, proc)
        time.sleep(0.5)
        before = committed_rows(db)  # what was committed at this moment must survive
        assert before, "no events committed yet"
        time.sleep(0.3 * round_)  # kill at a different point of the write cycle each round
        proc.kill()
        proc.wait(10)
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            after = dict(conn.execute("SELECT seq, id FROM outbox").fetchall())
        finally:
            conn.close()
        missing = {seq for seq in before if after.get(seq) != before[seq]}
        assert not missing, f"round {round_}: {len(missing)} committed event(s) lost"
    # and the daemon starts again on that file, carrying on the sequence
    proc = start(config, procs, "--demo")
    wait_http(port, proc)
    _, status = get_json(f"http://127.0.0.1:{port}/api/status", "t0ken")
    assert status["outbox"]["depth"] >= len(after)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_sd_notify_ready_watchdog_stopping(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(15)
    port = free_port()
    config = write_config(tmp_path, port, raw_reads=False)
    try:
        proc = start(config, procs, "--demo", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(server.recv(4096).decode())
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(server.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(server.recv(4096).decode())
        assert proc.wait(10) == 0
    finally:
        server.close()
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=" in ready


def test_bad_config_exits_78_with_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[store]\nid = 'x'\n")
    out = subprocess.run([EXE, "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 78
    assert "store.gateway: is required" in out.stderr


def test_unopenable_storage_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "c.toml"
    path.write_text(f"[store]\nid='s'\ngateway='g'\n[storage]\npath='{tmp_path / 'file' / 'o.db'}'\n"
                    f"[http]\nlisten='127.0.0.1:{free_port()}'\n")
    out = subprocess.run([EXE, "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 73  # EX_CANTCREAT (agent/startup.py; more in tests/agent/test_startup.py)
    assert "cannot write the storage directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_http_api_auth(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    proc = start(write_config(tmp_path, port, raw_reads=False), procs, "--demo")
    wait_http(port, proc)
    base = f"http://127.0.0.1:{port}"
    assert get_json(f"{base}/api/status")[0] == 401
    assert get_json(f"{base}/api/status", "wrong")[0] == 401
    code, status = get_json(f"{base}/api/status", "t0ken")
    assert code == 200
    assert {"store", "gateway", "version", "uptime_s", "readers", "outbox", "mqtt", "config"} <= set(status)
    assert {"depth", "bytes", "oldest_age_s", "dropped"} <= set(status["outbox"])
    assert {"connected", "last_error", "reconnects"} <= set(status["mqtt"])
    assert {"id", "protocol", "state", "reads"} <= set(status["readers"][0])
    assert get_json(f"{base}/api/nope", "t0ken")[0] == 404
    code, health = get_json(f"{base}/healthz")
    assert code == 200 and health["ok"] is True


def test_the_daemon_does_not_import_what_it_does_not_use() -> None:
    """Resident memory matters on a 1 GB gateway: heavy libraries load only when a feature needs them."""
    code = ("import sys, agent.app, agent.cli; "
            "print(','.join(m for m in ('scapy', 'sqlite_utils', 'cryptography', 'zstandard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
