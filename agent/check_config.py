"""`o2o-edge check-config`'s second opinion: things a valid config may still get wrong on this machine.

Errors (the schema's, agent/config.py) make check-config exit 78; these are
warnings, printed with their key paths, and the exit stays 0:

    a secret still holding the example's placeholder ("change-me")
    a reader's or alarm's serial port that does not exist here (it may be plugged in later: it is retried)
    a listen address that store devices cannot reach (loopback) or that this machine does not have
    a TLS certificate, key or CA file that cannot be used here (`run` would exit 78; the daemon's user may
    differ from the one checking, so this is a warning)
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from agent.config import Config, split_host_port
from agent.config_sections import SerialAlarm
from agent.errors import ConfigProblem

__all__ = ["PLACEHOLDERS", "warnings"]

# What config/example.toml puts where a secret goes; a real store must replace every one.
PLACEHOLDERS = ("change-me",)


def _secrets(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, SecretStr):
        yield path, value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _secrets(item, f"{path}[{i}]")


def _placeholders(config: Config) -> Iterator[ConfigProblem]:
    for path, secret in _secrets(config):
        if any(p in secret.lower() for p in PLACEHOLDERS):
            yield ConfigProblem(path, "still the example's placeholder: replace it with this store's secret")


def _ports(config: Config) -> Iterator[ConfigProblem]:
    def missing(port: str) -> bool:
        # pyserial URLs (socket://, rfc2217://, loop://) are not files; a device path is.
        return "://" not in port and not Path(port).exists()

    for i, reader in enumerate(config.rfid.readers):
        if missing(reader.port):
            yield ConfigProblem(f"rfid.readers[{i}].port", f"{reader.port} does not exist on this machine "
                                                           "(if the reader is plugged in later, it is picked up then)")
    for i, gate in enumerate(config.checkout.gates):
        for j, alarm in enumerate(gate.alarm):
            if isinstance(alarm, SerialAlarm) and missing(alarm.port):
                yield ConfigProblem(f"checkout.gates[{i}].alarm[{j}].port",
                                    f"{alarm.port} does not exist on this machine: the alarm cannot sound")


def _listen(path: str, listen: str, who: str) -> Iterator[ConfigProblem]:
    host, _ = split_host_port(listen)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name: resolved at start
    if address.is_loopback:
        yield ConfigProblem(path, f"{host} is reachable from this gateway only: {who} cannot connect; "
                                  "listen on the gateway's store-network address (or 0.0.0.0)")
        return
    if address.is_unspecified:
        return
    with socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET) as s:
        try:
            s.bind((host, 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                yield ConfigProblem(path, f"no network interface of this machine has {host}: "
                                          "the daemon would not start here")


def _tls_files(config: Config) -> Iterator[ConfigProblem]:
    from agent.startup import tls_problems

    for path, problem in tls_problems(config):
        yield ConfigProblem(path, f"{problem} (run would exit 78)")


def warnings(config: Config) -> list[ConfigProblem]:
    """Every warning for a config that passed validation."""
    found = [*_placeholders(config), *_ports(config), *_tls_files(config)]
    found += _listen("http.listen", config.http.listen, "staff phones and self-checkout kiosks")
    portal = config.wifi.portal
    if portal is not None and portal.listen is not None:
        found += _listen("wifi.portal.listen", portal.listen, "guests' phones")
    return found
