"""Guest consents from the captive portal, kept in local.db.

A consent records the choices (Wi-Fi, marketing, personalisation), the exact text version shown, the
language and the time. The phone's MAC address is kept only if the guest chose personalisation; the
loyalty id only if given. Withdrawal deletes both (a tombstone without identifiers remains, so the
store can show the choice was honoured) and the cloud is told with `consent.withdrawn`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Consent", "ConsentStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    id TEXT PRIMARY KEY, choices TEXT NOT NULL, text_version TEXT NOT NULL, lang TEXT NOT NULL,
    given_at REAL NOT NULL, withdrawn_at REAL, mac TEXT, loyalty TEXT, loyalty_verified INTEGER
);
CREATE INDEX IF NOT EXISTS consents_mac ON consents (mac);
"""


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    choices: dict[str, bool]
    text_version: str
    lang: str
    given_at: float
    mac: str | None
    loyalty: str | None


class ConsentStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        def _open() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            return conn

        self._conn = await asyncio.to_thread(_open)

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None

    async def give(self, choices: dict[str, bool], *, text_version: str, lang: str, mac: str | None,
                   loyalty: str | None) -> Consent:
        consent = Consent(secrets.token_urlsafe(18), choices, text_version, lang, time.time(),
                          mac if choices.get("personalisation") else None, loyalty)
        async with self._lock:
            await asyncio.to_thread(self._insert, consent)
        return consent

    def _insert(self, c: Consent) -> None:
        assert self._conn is not None
        self._conn.execute("INSERT INTO consents (id, choices, text_version, lang, given_at, mac, loyalty) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (c.id, json.dumps(c.choices), c.text_version, c.lang, c.given_at, c.mac, c.loyalty))

    async def withdraw(self, consent_id: str) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self._withdraw, consent_id, time.time())

    def _withdraw(self, consent_id: str, now: float) -> bool:
        assert self._conn is not None
        cur = self._conn.execute("UPDATE consents SET withdrawn_at = ?, mac = NULL, loyalty = NULL, "
                                 "choices = ? WHERE id = ? AND withdrawn_at IS NULL",
                                 (now, json.dumps({"withdrawn": True}), consent_id))
        return cur.rowcount == 1

    async def rows(self) -> list[dict[str, Any]]:
        def _rows() -> list[dict[str, Any]]:
            assert self._conn is not None
            cur = self._conn.execute("SELECT * FROM consents")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return await asyncio.to_thread(_rows)
