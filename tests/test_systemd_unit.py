"""The systemd unit: verified by systemd-analyze where it exists, the settings ops rely on, and its command
lines run as systemd would run them (exit codes against RestartPreventExitStatus, sd_notify, stop timeout)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "o2o-edge.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_settings() -> None:
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["o2o-edge"] and "dialout" in s["SupplementaryGroups"][0]
    assert s["StateDirectory"] == ["o2o-edge"] and s["ConfigurationDirectory"] == ["o2o-edge"]
    assert set(s["AmbientCapabilities"][0].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "RestrictAddressFamilies"):
        assert key in s, key
    assert s["ProtectSystem"] == ["strict"]
    assert s["RestartPreventExitStatus"] == ["78"]  # the CLI's exit code for a bad config file


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # Point the unit at this checkout's venv so the executable it names exists here.
    venv = Path(sys.executable).parent.parent
    unit = tmp_path / "o2o-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/o2o-edge/venv", str(venv)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "o2o-edge.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


# -- the unit's command lines, run as systemd would run them ------------------------------------------

def command(key: str, config: Path) -> list[str]:
    """ExecStartPre= / ExecStart= as an argv, pointed at this checkout's venv and a test config."""
    (line,) = settings()[key]
    venv = Path(sys.executable).parent.parent
    return [part.replace("/opt/o2o-edge/venv", str(venv)).replace("/etc/o2o-edge/o2o-edge.toml", str(config))
            for part in shlex.split(line)]


def unit_env(tmp_path: Path, notify: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    for assignment in settings()["Environment"]:
        key, value = assignment.split("=", 1)
        env[key] = value
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
        env["WATCHDOG_USEC"] = str(int(settings()["WatchdogSec"][0]) * 1_000_000)
    return env


def test_a_bad_config_stops_the_unit_for_good(tmp_path: Path) -> None:
    """The main process exits with a code systemd will not restart on (the bug: check-config exited 1). It must be
    the main process: RestartPreventExitStatus= is tested against main_exec_status only (systemd src/core/service.c,
    service_shall_restart), so an ExecStartPre failing with 78 was restarted every RestartSec."""
    assert "ExecStartPre" not in settings()
    bad = tmp_path / "o2o-edge.toml"
    bad.write_text('[store]\nid = "s"\n[rfid]\ngone_after_s = "3"\n')
    prevent = {int(code) for code in settings()["RestartPreventExitStatus"][0].split()}
    run = subprocess.run(command("ExecStart", bad), capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env=unit_env(tmp_path))
    assert run.returncode in prevent and "Traceback" not in run.stderr, run
    assert "store.gateway: is required" in run.stderr and "rfid.gone_after_s: expected a number" in run.stderr


def test_a_good_config_starts_notifies_and_stops_within_the_unit_timeouts(tmp_path: Path) -> None:
    from tests.conftest import free_port, write_config

    s = settings()
    config = write_config(tmp_path, "o2o-edge.toml", http={"listen": f"127.0.0.1:{free_port()}", "api_token": "t"},
                          mqtt={"enabled": False})
    notify = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(notify))
    server.settimeout(float(s["TimeoutStartSec"][0]))
    proc = subprocess.Popen(command("ExecStart", config), stderr=subprocess.PIPE, cwd=tmp_path,
                            env=unit_env(tmp_path, notify))
    try:
        seen: list[str] = []
        while not any("READY=1" in m for m in seen):  # Type=notify: started when it says so
            seen.append(server.recv(4096).decode())
        server.settimeout(float(s["WatchdogSec"][0]))
        while not any("WATCHDOG=1" in m for m in seen):
            seen.append(server.recv(4096).decode())
        # Restart=on-failure retries exit 75 (another instance), which clears when the other one stops.
        second = subprocess.run(command("ExecStart", config), capture_output=True, text=True, timeout=60,
                                cwd=tmp_path, env=unit_env(tmp_path))
        assert second.returncode == 75 and len(second.stderr.splitlines()) == 1, second
        assert str(second.returncode) not in s["RestartPreventExitStatus"][0].split()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the main process first
        assert proc.wait(float(s["TimeoutStopSec"][0])) == 0
        assert time.monotonic() - t0 < float(s["TimeoutStopSec"][0])
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
