"""A small asyncio wrapper around paho-mqtt 2, in the manner of aiomqtt.

The event loop drives paho's socket (on_socket_open -> add_reader,
on_socket_register_write -> add_writer), so there is no paho thread. Each
QoS 1 publish gets a future keyed by its message id that the PUBACK
resolves; pending futures fail when the connection drops. The client does
not reconnect by itself: the uplink owns reconnection and backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["Message", "MqttClient", "MqttError", "Will"]

log = logging.getLogger(__name__)


class MqttError(Exception):
    """Connecting, publishing or subscribing failed; the message says why (with paho's reason)."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None = None


class MqttClient:
    """One connection. `await connect()`, `await publish()`, `await subscribe()`, `await disconnect()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        protocol: int = 5,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        will: Will | None = None,
        on_message: Callable[[Message], None] | None = None,
        max_inflight: int = 100,
    ) -> None:
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.protocol = protocol
        self._on_message = on_message
        version = MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311
        self._paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            reconnect_on_failure=False,
            clean_session=None if protocol == 5 else True,
        )
        self._paho.max_inflight_messages_set(max_inflight)
        self._paho.max_queued_messages_set(0)
        if username is not None:
            self._paho.username_pw_set(username, password)
        if tls is not None:
            self._paho.tls_set_context(tls)
        if will is not None:
            self._paho.will_set(will.topic, will.payload, will.qos, will.retain)
        self._paho.on_connect = self._cb_connect
        self._paho.on_disconnect = self._cb_disconnect
        self._paho.on_publish = self._cb_publish
        self._paho.on_subscribe = self._cb_subscribe
        self._paho.on_message = self._cb_message
        self._paho.on_socket_open = self._cb_socket_open
        self._paho.on_socket_close = self._cb_socket_close
        self._paho.on_socket_register_write = self._cb_register_write
        self._paho.on_socket_unregister_write = self._cb_unregister_write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[str] | None = None
        self._pending_pub: dict[int, asyncio.Future[None]] = {}
        self._pending_sub: dict[int, asyncio.Future[None]] = {}
        self._misc_task: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._abandoned = False
        self.max_packet_size: int | None = None  # the broker's Maximum Packet Size (MQTT 5 CONNACK), if it says  # set by _teardown: a connect() still running on its thread must not go live

    # -- public --------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._disconnected is not None and not self._disconnected.done() and self._paho.is_connected()

    @property
    def disconnected(self) -> asyncio.Future[str]:
        """Resolves with the reason when the connection is lost (or closed)."""
        assert self._disconnected is not None, "not connected"
        return self._disconnected

    async def connect(self, connect_timeout: float = 10.0) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        self._disconnected = loop.create_future()
        try:
            async with asyncio.timeout(connect_timeout):
                # connect() blocks on DNS and the TCP (and TLS) handshake: run it off the loop.
                rc = await loop.run_in_executor(None, self._blocking_connect)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise MqttError(f"connect to {self.host}:{self.port} failed: {mqtt.error_string(rc)}")
                self._misc_task = loop.create_task(self._misc_loop())
                await self._connected
        except TimeoutError as exc:  # before OSError: TimeoutError is one, and says nothing by itself
            self._teardown("connect timed out")
            raise MqttError(f"connect to {self.host}:{self.port} timed out after {connect_timeout:g}s") from exc
        except (OSError, ssl.SSLError) as exc:
            self._teardown(f"connect failed: {exc}")
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        except BaseException:
            self._teardown("connect failed")
            raise

    def _blocking_connect(self) -> MQTTErrorCode:
        props = None
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        return self._paho.connect(self.host, self.port, self.keepalive, properties=props)

    async def disconnect(self) -> None:
        if self._paho.is_connected():
            self._paho.disconnect()
            self._do_write()
        self._teardown("closed by us")

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        properties: Properties | None = None, ack_timeout: float = 30.0,
    ) -> None:
        """Publish; with QoS 1 return only once the broker acknowledged it (PUBACK)."""
        if not self.is_connected:
            raise MqttError("not connected")
        info = self._paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        assert self._loop is not None
        # paho only queues here (the loop writes later), so the PUBACK cannot arrive before this line.
        fut = self._pending_pub[info.mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(ack_timeout):
                await fut
        except TimeoutError as exc:
            raise MqttError(f"no PUBACK for {topic} within {ack_timeout:g}s") from exc
        finally:
            self._pending_pub.pop(info.mid, None)

    async def subscribe(self, topics: list[tuple[str, int]], ack_timeout: float = 10.0) -> None:
        if not self.is_connected:
            raise MqttError("not connected")
        rc, mid = self._paho.subscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe failed: {mqtt.error_string(rc)}")
        assert self._loop is not None
        fut = self._pending_sub[mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(ack_timeout):
                await fut
        except TimeoutError as exc:
            raise MqttError(f"no SUBACK within {ack_timeout:g}s") from exc
        finally:
            self._pending_sub.pop(mid, None)

    # -- socket plumbing -----------------------------------------------------------------------

    def _cb_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Called from the executor thread during connect(): hop to the loop.
        assert self._loop is not None
        self._sock = sock
        self._loop.call_soon_threadsafe(self._add_reader, sock)

    def _add_reader(self, sock: Any) -> None:
        if self._abandoned:
            # The connect timed out meanwhile: close the socket before the loop ever writes its CONNECT (paho only
            # queued it). The client object is dropped after an abandoned connect, so paho's view of it is moot.
            with contextlib.suppress(OSError):
                sock.close()
            self._sock = None
            return
        if self._loop is not None and self._sock is sock:
            self._loop.add_reader(sock, self._do_read)
            if self._paho.want_write():
                self._loop.add_writer(sock, self._do_write)

    def _cb_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
        self._sock = None

    def _cb_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is None or self._abandoned:  # an abandoned connect writes nothing, ever
            return
        if self._loop_is_current():
            self._loop.add_writer(sock, self._do_write)
        else:
            self._loop.call_soon_threadsafe(self._cb_register_write, client, userdata, sock)

    def _cb_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None and self._loop_is_current():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

    def _loop_is_current(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _do_read(self) -> None:
        rc = self._paho.loop_read()
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self._teardown(f"read failed: {mqtt.error_string(rc)}")

    def _do_write(self) -> None:
        rc = self._paho.loop_write()
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self._teardown(f"write failed: {mqtt.error_string(rc)}")

    async def _misc_loop(self) -> None:
        # Keepalive pings and retries: paho's loop_misc once a second.
        while True:
            await asyncio.sleep(1)
            if self._paho.loop_misc() == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self._teardown("connection lost")
                return

    # -- paho callbacks ------------------------------------------------------------------------

    def _cb_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        fut = self._connected
        if fut is None or fut.done():
            return
        if reason.is_failure:
            fut.set_exception(MqttError(f"broker refused the connection: {reason}"))
        else:
            self.max_packet_size = getattr(props, "MaximumPacketSize", None) if props is not None else None
            fut.set_result(None)

    def _cb_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._teardown(f"disconnected: {reason}")

    def _cb_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        fut = self._pending_pub.get(mid)
        if fut is None or fut.done():  # a PUBACK nobody waits for any more (publish() timed out)
            return
        if fut.done():
            return
        if reason.is_failure:
            fut.set_exception(MqttError(f"broker rejected the publish: {reason}"))
        else:
            fut.set_result(None)

    def _cb_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        fut = self._pending_sub.get(mid)
        if fut is None or fut.done():
            return
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            fut.set_exception(MqttError(f"subscription refused: {', '.join(failed)}"))
        else:
            fut.set_result(None)

    def _cb_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            props = getattr(msg, "properties", None)
            self._on_message(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props))

    def _teardown(self, reason: str) -> None:
        self._abandoned = True
        if self._misc_task is not None and self._misc_task is not _current_task():
            self._misc_task.cancel()
        self._misc_task = None
        if self._sock is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
        with contextlib.suppress(OSError, socket.error):
            if self._sock is not None:
                self._paho.disconnect()
        for pending in (self._pending_pub, self._pending_sub):
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(MqttError(f"connection lost before the acknowledgement ({reason})"))
            pending.clear()
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(MqttError(reason))
            self._connected.exception()  # connect() may not be awaiting it any more: mark it retrieved
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(reason)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
