"""scripts/chaos --ci: the real daemon, mosquitto and simulated readers under every fault, bounded to 3 minutes
(the full run, 100 broker restarts and 20 kill -9, is `scripts/chaos`). Deselect with `-m "not chaos"`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.chaos
@pytest.mark.timeout(200)
def test_chaos_ci_variant_loses_nothing() -> None:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "chaos.py"), "--ci", "--seed", "20261202"],
                          capture_output=True, text=True, timeout=190)
    table = "\n".join(line for line in done.stdout.splitlines() if line.startswith("|"))
    assert done.returncode == 0, f"{table}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "| unexplained losses" in table and "| NO |" not in table
    assert time.monotonic() - t0 < 180
