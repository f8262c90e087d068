"""The exceptions o2o-edge raises, one base per family.

    O2OEdgeError
    ├── ConfigError            a config document is invalid; carries every problem with its key path
    ├── StorageError           a database cannot be opened or written (wraps sqlite3.Error, keeps disk-full)
    └── DocumentError          a document from central ops cannot be taken (agent/documents.py)

Device trouble is not an exception either: transports report it as a state
(a reader `offline` with its reason), and codec errors are values: a bad frame
on a serial line is an ordinary event (`drivers.rfid.base.FrameError`),
counted and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigProblem", "O2OEdgeError", "StorageError"]


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
