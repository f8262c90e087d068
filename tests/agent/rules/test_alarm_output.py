"""Alarm outputs: serial line pulses and commands, webhooks; failures are counted, never raised."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.config import GateConfig
from agent.rules.alarm_output import AlarmOutputs
from agent.rules.gate import Alarm
from tests.conftest import free_port, wait_for

ALARM = Alarm("exit-1", "exit", "3034", "03012345000116", "Shoe")


def gate(*actions: dict[str, object]) -> GateConfig:
    return GateConfig.model_validate({"id": "exit-1", "zones": ["exit"], "alarm": list(actions)})


async def test_rts_pulse_on_a_serial_url() -> None:
    outputs = AlarmOutputs([gate({"type": "serial", "port": "loop://", "line": "rts", "pulse_s": 0.05})])
    outputs.fire(ALARM)
    await wait_for(lambda: outputs.stats()["exit-1:serial:loop://"]["fired"] == 1, 5)
    await outputs.close()


async def test_failures_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outputs = AlarmOutputs([gate(
        {"type": "serial", "port": str(tmp_path / "no-relay"), "line": "dtr"},
        {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/alarm", "timeout_s": 1},
    )])
    with caplog.at_level(logging.ERROR):
        outputs.fire(ALARM)
        await wait_for(lambda: all(s["failed"] == 1 for s in outputs.stats().values()), 10)
    stats = outputs.stats()
    assert "No such file" in stats[f"exit-1:serial:{tmp_path / 'no-relay'}"]["last_error"]
    assert "alarm output" in caplog.text
    await outputs.close()


async def test_a_storm_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.rules import alarm_output

    monkeypatch.setattr(alarm_output, "MAX_PENDING", 2)
    outputs = AlarmOutputs([gate({"type": "serial", "port": "loop://", "line": "rts", "pulse_s": 0.2})])
    for _ in range(5):
        outputs.fire(ALARM)
    stats = outputs.stats()["exit-1:serial:loop://"]
    assert stats["skipped"] == 3
    await asyncio.sleep(0.6)
    assert outputs.stats()["exit-1:serial:loop://"]["fired"] == 2
    await outputs.close()


def test_serial_write_needs_a_command() -> None:
    from agent.errors import ConfigError
    from tests.conftest import make_config

    with pytest.raises(ConfigError, match="command"):
        make_config(Path("/tmp"), checkout={"gates": [{"id": "g", "zones": ["z"], "alarm": [
            {"type": "serial", "port": "/dev/x", "line": "write"}]}]})
