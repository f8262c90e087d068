"""A new user's first minutes: `scripts/demo`, run twice, then stopped with `kill`.

The demo listens on fixed ports (8080 for the page, 18830 for its broker), so this test runs only when
they are free, and says so when they are not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_PORTS = (8080, 18830)


def in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://127.0.0.1:8080{path}", headers={"Authorization": "Bearer demo-api-token"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def readers_online() -> bool:
    try:
        code, status = get("/api/status")
    except OSError:
        return False
    return code == 200 and len(status["readers"]) == 3 and all(r["state"] == "online" for r in status["readers"])


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.2)


def test_demo_twice_then_kill(tmp_path: Path) -> None:
    busy = [p for p in DEMO_PORTS if in_use(p)]
    if busy:
        pytest.skip(f"port(s) {', '.join(map(str, busy))} in use by something else: the demo needs them")
    log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 - closed in finally
    first = subprocess.Popen([str(ROOT / "scripts" / "demo")], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        # The first run may install what the machine lacks (scripts/setup): give it time.
        wait(lambda: first.poll() is not None or readers_online(), 300, "the first demo did not come up")
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        agent_pid = int((ROOT / "var" / "demo" / "o2o-edge.lock").read_text())

        t0 = time.monotonic()
        second = subprocess.run([str(ROOT / "scripts" / "demo")], capture_output=True, text=True, timeout=60)
        assert time.monotonic() - t0 < 30
        assert second.returncode == 75, second
        assert second.stdout == ""
        lines = second.stderr.splitlines()
        assert len(lines) == 1, second.stderr
        assert f"another o2o-edge (pid {agent_pid}) is already running on {ROOT / 'var' / 'demo'}" in lines[0]

        # The first one is untouched: healthy, its simulated readers still online on their ptys.
        time.sleep(2)
        assert get("/healthz")[0] == 200 and readers_online()
        assert first.poll() is None

        # `kill <pid>` of the script stops the agent and the broker, and frees the ports.
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(15) == 0
        wait(lambda: not any(in_use(p) for p in DEMO_PORTS), 10, "the demo's ports were not freed")
        with pytest.raises(ProcessLookupError):
            os.kill(agent_pid, 0)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        log.close()
