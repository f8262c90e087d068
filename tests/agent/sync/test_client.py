"""The asyncio paho wrapper on its own: a connect that outlives its timeout never goes live."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from agent.sync.client import MqttClient, MqttError
from tests.agent.sync.test_connection import _cert, _write


async def test_a_connect_that_times_out_never_sends_its_connect(tmp_path: Path) -> None:
    """A broker slow to finish the TLS handshake: the client gives up at its timeout; when the handshake
    completes later on paho's thread, the socket is closed before any MQTT byte (its CONNECT) is written."""
    ca_key, ca = _cert("o2o test CA", None, None, ca=True)
    ca_crt, _ = _write(tmp_path / "ca", ca_key, ca)
    key, cert = _cert("broker", ca_key, ca.subject, ca=False, san="127.0.0.1")
    crt, key_path = _write(tmp_path / "broker", key, cert)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(crt), str(key_path))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def slow_broker() -> None:
        conn, _ = listener.accept()
        time.sleep(0.8)  # past the client's connect timeout
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(3)
            try:
                got.append(tls.recv(1024))  # b"" when the client closes without writing
            except (OSError, ssl.SSLError):
                got.append(b"")

    thread = threading.Thread(target=slow_broker, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(ca_crt))
    client = MqttClient("127.0.0.1", port, client_id="abandoned", tls=client_ctx)
    with pytest.raises(MqttError, match="timed out"):
        await client.connect(connect_timeout=0.3)
    started = time.monotonic()
    await asyncio.to_thread(thread.join, 10)  # the loop must run: it is where the late socket gets closed
    assert time.monotonic() - started < 2.5, "the abandoned socket stayed open"
    listener.close()
    assert got == [b""], f"the abandoned client wrote {got!r}"
    assert not client.is_connected
