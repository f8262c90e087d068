"""Pseudonyms for people: identifiers hashed with a salt that changes every UTC day and is never stored,
so the store can count a device today but cannot follow it across days."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["DailySalt"]


class DailySalt:
    """A random salt per UTC day, kept in memory only."""

    def __init__(self, today: Callable[[], str] | None = None) -> None:
        self._today = today or (lambda: datetime.now(UTC).strftime("%Y-%m-%d"))
        self._day = ""
        self._salt = b""

    def hash(self, identifier: str) -> str:
        day = self._today()
        if day != self._day:
            self._day, self._salt = day, os.urandom(32)
        return hmac.new(self._salt, identifier.encode(), hashlib.sha256).hexdigest()[:16]
