"""Errors of the ops CLI, each with the exit code it ends in.

    O2OEdgeError
    └── OpsError              exit 1: a target rejected, did not answer or is unhealthy
        ├── UsageError        exit 2: bad arguments or an invalid document; nothing was sent
        │   └── DocumentError     a document failed local validation: every problem with its key path
        └── BrokerError       exit 3: the broker is unreachable, refused us, or the link dropped

The message is one sentence for the operator, never a traceback.
"""

from __future__ import annotations

from agent.errors import O2OEdgeError

__all__ = ["EXIT_BROKER", "EXIT_FAILED", "EXIT_USAGE", "BrokerError", "DocumentError", "OpsError", "UsageError"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKER = 3


class OpsError(O2OEdgeError):
    exit_code = EXIT_FAILED


class UsageError(OpsError):
    exit_code = EXIT_USAGE


class DocumentError(UsageError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "".join(f"\n  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s), nothing was sent:{lines}")


class BrokerError(OpsError):
    exit_code = EXIT_BROKER
