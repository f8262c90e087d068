"""RFID readers on serial lines: one codec module per protocol family.

The config's `protocol` id picks the module; modules are imported only
when a reader of that family is configured.
"""

from __future__ import annotations

import importlib

from drivers.rfid.base import ReaderEmulator, ReaderSession

__all__ = ["PROTOCOL_MODULES", "emulator_class", "session_class"]

PROTOCOL_MODULES = {
    "uhfreader18": "drivers.rfid.uhfreader18",
    "mercury": "drivers.rfid.mercury",
    "r2000": "drivers.rfid.r2000",
    "em4100": "drivers.rfid.em4100",
}


def session_class(protocol: str) -> type[ReaderSession]:
    cls: type[ReaderSession] = importlib.import_module(PROTOCOL_MODULES[protocol]).Session
    return cls


def emulator_class(protocol: str) -> type[ReaderEmulator]:
    cls: type[ReaderEmulator] = importlib.import_module(PROTOCOL_MODULES[protocol]).Emulator
    return cls
