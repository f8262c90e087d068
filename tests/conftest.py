"""Shared fixtures: configs on disk, simulated readers on real ptys, a running agent."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.config import Config, parse_config


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rfid-port", help="a real reader's serial port, for the opt-in hardware tests")
    parser.addoption("--rfid-protocol", default="uhfreader18", help="protocol of the reader on --rfid-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(tmp_path: Path, **sections: Any) -> Config:
    doc: dict[str, Any] = {
        "store": {"id": "test-store", "gateway": "gw-test"},
        "storage": {"path": str(tmp_path / "o2o.db"), "synchronous": "normal"},
        "http": {"listen": "127.0.0.1:0", "api_token": "test-token"},
    }
    for key, value in sections.items():
        doc[key] = value
    return parse_config(doc)


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    return lambda **sections: make_config(tmp_path, **sections)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy; fail with a clear message after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class RunningAgent:
    def __init__(self, agent: Agent, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.agent = agent
        self.task = task
        self.stop_event = stop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.agent.http_port}"

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def start_agent() -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningAgent] = []

    async def start(config: Config, **kwargs: Any) -> RunningAgent:
        agent = Agent(config, **kwargs)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        ready = asyncio.create_task(agent.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the start-up error
        assert ready in done, "agent did not become ready"
        ra = RunningAgent(agent, task, stop)
        running.append(ra)
        return ra

    yield start
    for ra in running:
        if not ra.task.done():
            await ra.stop()


@pytest.fixture
def sim_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "dev"
    d.mkdir()
    yield d
