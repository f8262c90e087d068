"""sd_notify, journald-friendly logs and the supervisor, each on its own."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from agent.logs import setup_logging
from agent.sdnotify import Notifier, watchdog_interval_s
from agent.supervisor import RestartPolicy, supervise


def test_notifier_sends_datagrams_and_abstract_namespace(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    n = Notifier(str(path))
    assert n.ready("3 readers") and server.recv(100) == b"READY=1\nSTATUS=3 readers"
    assert n.watchdog() and server.recv(100) == b"WATCHDOG=1"
    assert n.stopping() and server.recv(100) == b"STOPPING=1"
    n.close()
    server.close()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind("\0o2o-test-notify")
    abstract.settimeout(2)
    assert Notifier("@o2o-test-notify").ready()
    assert abstract.recv(100) == b"READY=1"
    abstract.close()


def test_notifier_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False


def test_notifier_survives_a_vanished_socket(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.WARNING):
        assert n.watchdog() is False
    assert "sd_notify" in caplog.text


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # armed for another process
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "nonsense")
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval_s() is None


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_journald_lines_carry_priorities(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("info")
    logging.getLogger("agent.test").warning("reader %s unplugged", "checkout-1")
    logging.getLogger("agent.test").debug("not shown at info")
    err = capsys.readouterr().err
    assert "<4>WARNING agent.test: reader checkout-1 unplugged" in err
    assert "not shown" not in err
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging("info")
    logging.getLogger("agent.test").error("plain")
    line = capsys.readouterr().err.strip()
    assert line.endswith("ERROR agent.test: plain") and not line.startswith("<")


async def test_supervisor_restarts_with_growing_backoff() -> None:
    runs: list[float] = []
    crashes: list[tuple[int, float]] = []

    async def flaky() -> None:
        runs.append(asyncio.get_running_loop().time())
        raise RuntimeError("boom")

    policy = RestartPolicy(initial_s=0.01, maximum_s=0.04, jitter=0.0)
    task = asyncio.create_task(supervise("flaky", flaky, policy=policy,
                                         on_crash=lambda e, n, w: crashes.append((n, w))))
    while len(crashes) < 5:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    waits = [w for _, w in crashes]
    assert waits[:4] == [0.01, 0.02, 0.04, 0.04]  # doubling, capped
    assert [n for n, _ in crashes][:5] == [1, 2, 3, 4, 5]


async def test_supervisor_resets_backoff_after_a_healthy_run() -> None:
    clock = [0.0]
    crashes: list[float] = []

    async def run() -> None:
        clock[0] += 100.0  # "ran" for 100 s before failing: healthy
        raise RuntimeError("late failure")

    policy = RestartPolicy(initial_s=0.01, maximum_s=1.0, healthy_after_s=60, jitter=0.0)
    task = asyncio.create_task(supervise("x", run, policy=policy, clock=lambda: clock[0],
                                         on_crash=lambda e, n, w: crashes.append(w)))
    while len(crashes) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert crashes[:3] == [0.01, 0.01, 0.01]
