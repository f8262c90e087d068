"""Connection options shared by every ops subcommand, and a connected MqttClient from them.

The options mirror `[mqtt]` of a gateway: host, port, TLS (CA file, client
certificate and key) and username/password, the password read from a file so
it never shows in `ps` or shell history. A failure to connect becomes one
BrokerError sentence that says what to check; no secret is ever in it.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.ops.errors import BrokerError, UsageError
from agent.sync.client import Message, MqttClient, MqttError

__all__ = ["BrokerOptions", "connect"]

# Connecting is DNS + TCP (+ TLS) + CONNACK: a healthy broker answers within a second or two.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    tls_ca: Path | None = None
    cert: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the password file {self.password_file}: {exc}") from exc
        return text.splitlines()[0] if text else ""

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.tls_ca or self.cert):
            return None
        if (self.cert is None) != (self.key_file is None):
            raise UsageError("--cert and --key-file go together (a client certificate and its key)")
        try:
            context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
            if self.cert is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the TLS files: {exc}") from exc
        return context


async def connect(options: BrokerOptions, on_message: Callable[[Message], None]) -> MqttClient:
    """A connected client (MQTT 5, clean session, a random client id) or a BrokerError sentence."""
    if options.password_file is not None and options.username is None:
        raise UsageError("--password-file needs --username")
    client = MqttClient(
        options.host, options.port,
        client_id=f"o2o-edge-ops-{secrets.token_hex(4)}",
        username=options.username, password=options.password(),
        tls=options.ssl_context(), on_message=on_message,
    )
    try:
        await client.connect(CONNECT_TIMEOUT_S)
    except MqttError as exc:
        raise BrokerError(describe_connect_error(options, exc)) from exc
    return client


def describe_connect_error(options: BrokerOptions, exc: MqttError) -> str:
    cause = exc.__cause__
    where = options.where
    if isinstance(cause, ssl.SSLError):
        reason = getattr(cause, "reason", None) or str(cause)
        return f"TLS with the MQTT broker at {where} failed ({reason}): check --tls-ca, --cert and --key-file"
    if isinstance(cause, TimeoutError):  # before OSError, of which it is a subclass
        return f"the MQTT broker at {where} did not answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(cause, OSError):
        reason = cause.strerror or str(cause)
        return f"cannot reach the MQTT broker at {where} ({reason}): check --host and --port and that it runs"
    text = str(exc)
    if text.startswith("broker refused the connection: "):
        reason = text.removeprefix("broker refused the connection: ")
        return (f"the MQTT broker at {where} refused the connection ({reason}): "
                "check --username and --password-file, or the client certificate")
    return f"cannot connect to the MQTT broker at {where}: {text}"
