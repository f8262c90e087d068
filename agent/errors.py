"""The exceptions o2o-edge raises, one base per family.

    O2OEdgeError
    ├── ConfigError            a config document is invalid; carries every problem with its key path
    ├── StorageError           the outbox database cannot be opened or written (wraps sqlite3.Error)
    └── DriverError            a device or its source failed
        └── PortError          a serial port could not be opened, read or written (wraps SerialException/OSError)

Codec errors are values, not exceptions: a bad frame on a serial line is an
ordinary event (`drivers.rfid.base.FrameError`), counted and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigProblem", "DriverError", "O2OEdgeError", "PortError", "StorageError"]


class O2OEdgeError(Exception):
    """Base of every error o2o-edge raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config document: where (`rfid.readers[1].baudrate`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(O2OEdgeError):
    """A config document failed validation; `problems` lists every issue found."""

    def __init__(self, problems: list[ConfigProblem], source: str = "config", *, rolled_back: bool = False) -> None:
        self.problems = problems
        self.source = source
        # True when a push was tried and undone (a reader port could not be opened), not just refused.
        self.rolled_back = rolled_back
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class StorageError(O2OEdgeError):
    """The outbox database failed; the original sqlite3 error is the __cause__."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class DriverError(O2OEdgeError):
    """A device driver failed in a way its transport could not absorb."""


class PortError(DriverError):
    """A serial port could not be opened, read or written."""
