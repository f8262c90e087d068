"""Secrets never reach a log line: kiosk and screen tokens travel in URLs (`?token=`), bearer tokens in headers.

    RedactSecrets    a logging filter on every handler (stderr, journald, the diagnostics bundle's recent
                     logs): query parameters that carry secrets and `Bearer …` values become "***", in the
                     message and in a traceback's text

Code that logs a request logs `request.path` (never the query); the filter is
the net under that rule: aiohttp's access log (its request line and Referer
carry the query, should anyone turn it on), libraries' messages, the next
mistake.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SECRET_PARAMS", "RedactSecrets", "redact"]

# Query parameters that carry secrets here or at our neighbours (openNDS's tok, FAS keys, signatures).
SECRET_PARAMS = ("token", "tok", "api_token", "password", "passwd", "secret", "key", "faskey", "signature", "sig",
                 "access_token", "session")
_QUERY = re.compile(r"(?i)(?<![A-Za-z0-9_])((?:%s)=)[^&\s\"'<>#]+" % "|".join(SECRET_PARAMS))  # noqa: UP031
_BEARER = re.compile(r"\b(Bearer\s+)[^\s\"',;]+")  # the header's spelling: "wrong bearer token" is prose
MASK = "***"


def redact(text: str) -> str:
    """`?token=abc&x=1` -> `?token=***&x=1`; `Bearer abc` -> `Bearer ***`."""
    return _BEARER.sub(rf"\g<1>{MASK}", _QUERY.sub(rf"\g<1>{MASK}", text))


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (and its traceback text) with `redact` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
