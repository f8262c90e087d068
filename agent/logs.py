"""Plain log lines on stderr that read well in journald and on a terminal.

Under systemd (JOURNAL_STREAM set) journald adds the time and the unit, so a
line is `LEVEL logger: message` with an sd-daemon(3) priority prefix `<N>`
that journald turns into the entry's priority. On a terminal the time is added.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque

from agent.redact import RedactSecrets

__all__ = ["RecentLogs", "setup_logging"]

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # Every line of a multi-line message (a traceback) keeps the priority.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too chatty at info for a status page that polls.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class RecentLogs(logging.Handler):
    """The last log lines, for the diagnostics bundle (bounded)."""

    def __init__(self, keep: int = 500) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=keep)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.addFilter(RedactSecrets())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)
