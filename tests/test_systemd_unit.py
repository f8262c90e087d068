"""The systemd unit: verified by systemd-analyze where it exists, and the settings ops rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
