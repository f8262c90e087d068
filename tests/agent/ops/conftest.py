"""Fixtures for the ops CLI: real gateways (`o2o-edge run` subprocesses) on a real mosquitto, a signing key,
the CLI itself in-process, and a scripted fake gateway for answers a real one does not give yet.

O2O_OPS_GATEWAY_SRC=DIR runs the gateways from another source tree (e.g. a released version, exported with
`git archive`), to check this CLI against it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli import main
from agent.ops.keys import KeyPair, keygen
from tests.conftest import Mosquitto, Subscriber

EXE = str(Path(sys.executable).with_name("o2o-edge"))
# A reader that always opens (pyserial's loopback) and, being a passive em4100, stays online without frames.
LOOP_READER = '[[rfid.readers]]\nid = "floor"\nport = "loop://"\nprotocol = "em4100"\nbaudrate = 9600\nsilence_timeout_s = 3600\n'
# A reader whose port does not exist: a push that adds it is rejected (rolled back); one in the local file runs offline.
MISSING_PORT = "/dev/nonexistent-o2o-door"
DOOR_READER = (f'[[rfid.readers]]\nid = "door"\nport = "{MISSING_PORT}"\nprotocol = "em4100"\nbaudrate = 9600\n'
               "silence_timeout_s = 3600\n")


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.02)


class GatewayProcess:
    """One real gateway: its own directory, config file and `o2o-edge run` process."""

    def __init__(self, root: Path, store: str, gateway: str, broker: Mosquitto, public_key: str, extra: str) -> None:
        self.store, self.gateway = store, gateway
        self.dir = root / f"{store}-{gateway}"
        self.dir.mkdir(parents=True)
        self.config = self.dir / "o2o.toml"
        self.config.write_text(f"""
[store]
id = "{store}"
gateway = "{gateway}"
[storage]
path = "{self.dir / 'o2o.db'}"
synchronous = "normal"
[http]
listen = "127.0.0.1:0"
[mqtt]
port = {broker.port}
reconnect_min_s = 0.05
reconnect_max_s = 0.5
config_public_key = "{public_key}"
{extra}""")
        self.log = self.dir / "o2o.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def topic(self) -> str:
        return f"o2o/v1/{self.store}/{self.gateway}"

    def start(self) -> None:
        env = dict(os.environ)
        if os.environ.get("O2O_OPS_GATEWAY_SRC"):
            env["PYTHONPATH"] = os.environ["O2O_OPS_GATEWAY_SRC"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([EXE, "run", "--config", str(self.config)], stdout=log, stderr=log, env=env)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def pushed(self) -> dict[str, Any] | None:
        """The push it applied and kept (config-pushed.json), or None."""
        path = self.dir / "config-pushed.json"
        return json.loads(path.read_text()) if path.exists() else None


class TestFleet:
    """Real gateways on the test broker, and a subscriber that sees every o2o/v1 message."""

    __test__ = False

    def __init__(self, broker: Mosquitto, root: Path, keys: KeyPair) -> None:
        self.broker, self.root, self.keys = broker, root, keys
        self.gateways: dict[str, GatewayProcess] = {}
        self.watch = Subscriber(broker.port, "o2o/v1/#")

    def add(self, store: str, gateway: str, extra: str = LOOP_READER) -> GatewayProcess:
        gw = GatewayProcess(self.root, store, gateway, self.broker, self.keys.public_b64, extra)
        self.gateways[f"{store}/{gateway}"] = gw
        self.start(gw)
        return gw

    def births(self, gw: GatewayProcess) -> int:
        """Birth messages seen live (a re-subscription also brings the retained one again: not counted)."""
        topic = f"{gw.topic}/state"
        return sum(1 for m in list(self.watch.messages)
                   if m.topic == topic and not m.retain and m.payload and json.loads(m.payload).get("online"))

    def connect_reports(self, gw: GatewayProcess) -> int:
        """The config/reported a gateway sends after each connect, seen live."""
        topic = f"{gw.topic}/config/reported"
        return sum(1 for m in list(self.watch.messages)
                   if m.topic == topic and not m.retain and m.payload and json.loads(m.payload).get("trigger") == "connect")

    def start(self, gw: GatewayProcess) -> None:
        """Started and all the way up: its birth, then its running config reported (a gateway killed between the
        two leaves no config version on the broker, which the fleet tests would read as a bug)."""
        births, reports = self.births(gw), self.connect_reports(gw)
        gw.start()
        try:
            wait_until(lambda: self.births(gw) > births and self.connect_reports(gw) > reports, 20,
                       f"{gw.store}/{gw.gateway} online")
        except AssertionError:
            raise AssertionError(f"gateway did not come online; its log:\n{gw.log.read_text()[-3000:]}") from None

    def restart(self, gw: GatewayProcess) -> None:
        gw.stop()
        self.start(gw)

    def messages(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) if p else {} for p in self.watch.payloads(topic)]

    def close(self) -> None:
        for gw in self.gateways.values():
            gw.stop()
        self.watch.close()


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return keygen(tmp_path / "keys")


@pytest.fixture
def fleet(mosquitto: Mosquitto, tmp_path: Path, keys: KeyPair) -> Iterator[TestFleet]:
    f = TestFleet(mosquitto, tmp_path / "gateways", keys)
    yield f
    f.close()


def auth_broker(workdir: Path, users: dict[str, str], acl: str | None = None) -> Mosquitto:
    """A mosquitto that wants a username and password (made with `mosquitto_passwd -b`), and an ACL file if given."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwords = workdir / "passwords"
    for i, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwords), user, password],
                       check=True, capture_output=True)
    broker = Mosquitto(workdir)
    extra = f"allow_anonymous false\npassword_file {passwords}\n"
    if acl is not None:
        (workdir / "acl").write_text(acl)
        extra += f"acl_file {workdir / 'acl'}\n"
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true\n", extra))
    broker.start()
    return broker


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out=\n{self.out}\nerr=\n{self.err})"


@pytest.fixture
def ops(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Callable[..., Result]:
    """Run `o2o-edge ops ARGS…` in this process against the test broker (and a state dir in tmp)."""

    def run(*args: str | Path, port: int | None = None) -> Result:
        argv = ["ops", *map(str, args)]
        if args[0] != "keygen":
            argv += ["--port", str(port or mosquitto.port), "--settle", "5"]
        if args[0] in ("push", "rollback"):
            argv += ["--state-dir", str(tmp_path / "ops-state")]
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


class FakeGateway:
    """A scripted gateway: retained birth, and answers from `handler(topic_suffix, doc)` -> [(suffix, doc)]."""

    def __init__(self, broker: Mosquitto, store: str, gateway: str,
                 handler: Callable[[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]) -> None:
        self.base = f"o2o/v1/{store}/{gateway}"
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"fake-{store}-{gateway}",
                                  protocol=mqtt.MQTTv5)

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            c.subscribe(f"{self.base}/#", qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
            self._ready.set()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            suffix = msg.topic[len(self.base) + 1:]
            if suffix == "state" or suffix.endswith(("/reported", "/result")):
                return
            doc = json.loads(msg.payload) if msg.payload else {}
            self.received.append((suffix, doc))
            for reply_suffix, reply in handler(suffix, doc):
                c.publish(f"{self.base}/{reply_suffix}", json.dumps(reply), qos=1,
                          retain=reply_suffix.endswith("/reported"))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._ready.wait(10), "fake gateway did not subscribe"
        birth = {"online": True, "store": store, "gateway": gateway, "version": "fake", "config_version": 0}
        self.client.publish(f"{self.base}/state", json.dumps(birth), qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        """Leave as a gateway does on a clean stop."""
        goodbye = json.dumps({"online": False, "gateway": self.base.rsplit("/", 1)[1], "reason": "shutdown"})
        self.client.publish(f"{self.base}/state", goodbye, qos=1, retain=True).wait_for_publish(10)
        self.client.loop_stop()
        self.client.disconnect()
