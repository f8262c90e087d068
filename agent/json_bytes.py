"""JSON out, whatever a document from outside holds.

orjson is fast but stops at 64-bit integers ("Integer exceeds 64-bit range"),
and an event, a report or a stored document may carry a number the cloud or a
kiosk sent. One such value must not stop the outbox writer or the MQTT side:
what orjson refuses, the standard library writes (any integer, dataclasses as
objects, anything else as its string).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson

__all__ = ["json_bytes"]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value`; never raises for what a JSON document or a dataclass of one holds."""
    try:
        return orjson.dumps(value, default=str)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False).encode()
