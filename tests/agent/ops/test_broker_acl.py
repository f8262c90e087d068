"""config/ops/mosquitto.acl on a real mosquitto with a password file: a gateway can write only under its own
o2o/v1/{store}/{gateway}/ prefix and read only its own downlink; central ops still works through it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.ops.keys import KeyPair
from agent.sync.client import MqttClient, MqttError
from tests.agent.ops.conftest import LOOP_READER, GatewayProcess, Result, auth_broker, wait_until
from tests.conftest import Mosquitto

ACL = Path(__file__).resolve().parents[3] / "config" / "ops" / "mosquitto.acl"
USERS = {"s1/gw-a": "pw-gw-a", "s2/gw-c": "pw-gw-c", "o2o-ops": "pw-ops", "o2o-ingest": "pw-ingest"}


class Watcher:
    """Everything a user may read under o2o/v1/ (central ops by default: all of it)."""

    def __init__(self, port: int, username: str = "o2o-ops", topic: str = "o2o/v1/#") -> None:
        self.messages: list[Any] = []
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"acl-watch-{username}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, USERS[username])
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def payloads(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in list(self.messages) if m.topic == topic and m.payload]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def acl_broker(tmp_path: Path) -> Any:
    broker = auth_broker(tmp_path / "broker", USERS, ACL.read_text())
    yield broker
    broker.stop()


def start_gateway(root: Path, broker: Mosquitto, keys: KeyPair, store: str, gateway: str, watcher: Watcher) -> GatewayProcess:
    user = f"{store}/{gateway}"
    gw = GatewayProcess(root, store, gateway, broker, keys.public_b64,
                        f'username = "{user}"\npassword = "{USERS[user]}"\n' + LOOP_READER)
    gw.start()
    wait_until(lambda: any(p.get("online") for p in watcher.payloads(f"{gw.topic}/state")), 20, f"{user} online")
    return gw


async def writes_as(port: int, username: str) -> tuple[list[str], list[str]]:
    """What a client holding `username`'s password may publish: (refused, accepted).
    One connection per attempt: after refusing a publish (PUBACK "Not authorized"), mosquitto 2.0.11 drops
    the client at its next packet."""

    async def attempt(topic: str) -> bool:
        client = MqttClient("127.0.0.1", port, client_id="acl-rogue", username=username, password=USERS[username])
        await client.connect()
        try:
            await client.publish(topic, json.dumps({"online": False, "id": "rogue"}).encode(),
                                 retain=topic.endswith("state"))
            return True
        except MqttError:
            return False
        finally:
            await client.disconnect()

    refused, accepted = [], []
    for topic in ("o2o/v1/s2/gw-c/state", "o2o/v1/s2/gw-c/events", "o2o/v1/s2/gw-c/config/reported",
                  "o2o/v1/s2/gw-c/config/set", "o2o/v1/s1/gw-b/state", "o2o/v1/s1/gw-a/config/set",
                  "o2o/v1/s1/gw-a/cmd/ping", "o2o/ops/x/settled", "elsewhere", "o2o/v1/s1/gw-a/cmd/ping/result"):
        (accepted if await attempt(topic) else refused).append(topic)
    return refused, accepted


def test_a_gateway_cannot_write_or_read_another_stores_topics(acl_broker: Mosquitto, tmp_path: Path, keys: KeyPair,
                                                               ops: Callable[..., Result]) -> None:
    watcher = Watcher(acl_broker.port)
    gateways = [start_gateway(tmp_path / "gw", acl_broker, keys, "s1", "gw-a", watcher),
                start_gateway(tmp_path / "gw", acl_broker, keys, "s2", "gw-c", watcher)]
    try:
        refused, accepted = asyncio.run(writes_as(acl_broker.port, "s1/gw-a"))
        assert accepted == ["o2o/v1/s1/gw-a/cmd/ping/result"]  # its own prefix, an upward topic
        assert len(refused) == 9
        wait_until(lambda: watcher.payloads("o2o/v1/s1/gw-a/cmd/ping/result"), what="the allowed message")
        assert [m.topic for m in watcher.messages if b"rogue" in m.payload] == ["o2o/v1/s1/gw-a/cmd/ping/result"]
        assert watcher.payloads("o2o/v1/s2/gw-c/state")[-1]["online"] is True  # nobody said it went offline

        # Central ops works through the same ACL: a push (retained, with whatever secrets a config holds) and a
        # command to both stores, while s1/gw-a's identity listens to everything it can.
        spy = Watcher(acl_broker.port, "s1/gw-a")
        password = tmp_path / "ops-password"
        password.write_text(USERS["o2o-ops"] + "\n")
        push = tmp_path / "push.toml"
        push.write_text('[store]\nname = "ACL"\n' + LOOP_READER)
        creds = ("--username", "o2o-ops", "--password-file", str(password))
        r = ops("push", push, "--all", "--key", keys.private_path, *creds, port=acl_broker.port)
        assert r.code == 0, r
        assert all(gw.pushed()["store"]["name"] == "ACL" for gw in gateways)  # type: ignore[index]
        assert ops("cmd", "ping", "--all", *creds, port=acl_broker.port).code == 0
        r = ops("fleet", *creds, port=acl_broker.port)
        assert r.out.startswith("2 gateway(s) in 2 store(s): 2 online"), r
        spy.close()
        assert {m.topic for m in spy.messages} == {"o2o/v1/s1/gw-a/config/set", "o2o/v1/s1/gw-a/cmd/ping"}

        # A gateway's identity is not an ops identity.
        gw_password = tmp_path / "gw-password"
        gw_password.write_text(USERS["s1/gw-a"] + "\n")
        r = ops("fleet", "--username", "s1/gw-a", "--password-file", str(gw_password), port=acl_broker.port)
        assert r.code == 3 and "publishing the settle marker" in r.err and "Not authorized" in r.err
    finally:
        for gw in gateways:
            gw.stop()
        watcher.close()


def test_the_cloud_reads_events_through_a_shared_subscription(acl_broker: Mosquitto, tmp_path: Path,
                                                              keys: KeyPair) -> None:
    watcher = Watcher(acl_broker.port)
    gateway = start_gateway(tmp_path / "gw", acl_broker, keys, "s1", "gw-a", watcher)

    async def ingest() -> tuple[list[str], list[str]]:
        got: list[str] = []
        client = MqttClient("127.0.0.1", acl_broker.port, client_id="acl-ingest", username="o2o-ingest",
                            password=USERS["o2o-ingest"], on_message=lambda m: got.append(m.topic))
        await client.connect()
        refused = []
        try:
            await client.subscribe([("$share/ingest/o2o/v1/+/+/events", 1)])
            gateway.start()  # its first events (agent.started, reader.online) come now
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.05)
            try:
                await client.publish("o2o/v1/s1/gw-a/config/set", b"{}")
            except MqttError:
                refused.append("config/set")
        finally:
            await client.disconnect()
        return got, refused

    try:
        gateway.stop()
        got, refused = asyncio.run(ingest())
        assert got and set(got) == {"o2o/v1/s1/gw-a/events"}
        assert refused == ["config/set"]
    finally:
        gateway.stop()
        watcher.close()
