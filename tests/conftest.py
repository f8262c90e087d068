"""Shared fixtures: configs on disk, simulated readers on real ptys, a running agent."""

from __future__ import annotations

import asyncio
import os
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


def config_doc(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A test gateway's config document: store test-store/gw-test, storage in tmp_path, HTTP on a free port
    chosen by the OS, then `sections` (each replaces the default section of that name)."""
    doc: dict[str, Any] = {
        "store": {"id": "test-store", "gateway": "gw-test"},
        "storage": {"path": str(tmp_path / "o2o.db"), "synchronous": "normal"},
        "http": {"listen": "127.0.0.1:0", "api_token": "test-token"},
    }
    doc.update(sections)
    return doc


def make_config(tmp_path: Path, **sections: Any) -> Config:
    return parse_config(config_doc(tmp_path, **sections))


def _toml_keys(value: Any) -> Any:
    """TOML keys are strings: antenna numbers in `zones` become "1", "2"."""
    if isinstance(value, dict):
        return {str(k): _toml_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_keys(v) for v in value]
    return value


def write_config(tmp_path: Path, name: str = "o2o.toml", **sections: Any) -> Path:
    """The same document as a TOML file, for tests that run the daemon as a process (`o2o-edge run --config`)."""
    import tomli_w

    path = tmp_path / name
    path.write_text(tomli_w.dumps(_toml_keys(config_doc(tmp_path, **sections))))
    return path


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


class Mosquitto:
    """A real mosquitto broker on a loopback port, stoppable and restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        import shutil

        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed: scripts/test installs it (scripts/setup --system)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            # persistence: a subscriber's session (and what is queued for it) survives a broker restart
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 0\n"
            "max_inflight_messages 0\nmax_queued_messages 0\nmessage_size_limit 0\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n"
            # as root, mosquitto drops to user "mosquitto", which cannot write the test's temp dir
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: Any = None

    def start(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"mosquitto exited with {self.proc.returncode}") from None
                time.sleep(0.02)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def _plain(payload: bytes) -> bytes:
    if payload[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=256 << 20)
    if payload[:1] == b"\x78":
        import zlib

        return zlib.decompress(payload)
    return payload


class Subscriber:
    """A real MQTT client (paho, threaded) recording what it receives."""

    def __init__(self, port: int, topic: str) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        # A persistent session, as a cloud consumer has: messages published while it reconnects wait for it.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            c.subscribe(topic, qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
            self._ready.set()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            with self._lock:
                self.messages.append(msg)

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.loop_start()
        assert self._ready.wait(10), "subscriber did not subscribe"

    def payloads(self, topic: str | None = None) -> list[bytes]:
        """The payloads received, `events` batches decompressed (zstd is the default; `messages` has them raw)."""
        with self._lock:
            return [_plain(bytes(m.payload)) for m in self.messages if topic is None or m.topic == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
