"""Guest consents from the captive portal, kept in local.db.

A consent records the choices (Wi-Fi, marketing, personalisation), the exact text version shown, the
language and the time. The phone's MAC address is kept only if the guest chose personalisation; the
loyalty id only if given. Withdrawal deletes both (a tombstone without identifiers remains, so the
store can show the choice was honoured) and the cloud is told with `consent.withdrawn`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.storage import SqliteWorker, storage_errors, transaction

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
    """Raises StorageError (with the sqlite cause) when the file cannot be written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteWorker(path, name="consents", label="consent store")

    async def open(self) -> None:
        await self._db.open(lambda conn: conn.executescript(_SCHEMA))

    async def close(self) -> None:
        await self._db.close()

    async def give(self, choices: dict[str, bool], *, text_version: str, lang: str, mac: str | None,
                   loyalty: str | None) -> Consent:
        consent = Consent(secrets.token_urlsafe(18), choices, text_version, lang, time.time(),
                          mac if choices.get("personalisation") else None, loyalty)
        await self._db.run(_insert, consent)
        return consent

    async def withdraw(self, consent_id: str) -> bool:
        return await self._db.run(_withdraw, consent_id, time.time())

    async def rows(self) -> list[dict[str, Any]]:
        return await self._db.run(_rows)


def _insert(conn: sqlite3.Connection, c: Consent) -> None:
    with storage_errors("consent write failed"), transaction(conn):
        conn.execute("INSERT INTO consents (id, choices, text_version, lang, given_at, mac, loyalty) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (c.id, json.dumps(c.choices), c.text_version, c.lang, c.given_at, c.mac, c.loyalty))


def _withdraw(conn: sqlite3.Connection, consent_id: str, now: float) -> bool:
    with storage_errors("consent withdrawal failed"), transaction(conn):
        cur = conn.execute("UPDATE consents SET withdrawn_at = ?, mac = NULL, loyalty = NULL, "
                           "choices = ? WHERE id = ? AND withdrawn_at IS NULL",
                           (now, json.dumps({"withdrawn": True}), consent_id))
        return cur.rowcount == 1


def _rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    with storage_errors("consent read failed"):
        cur = conn.execute("SELECT * FROM consents")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
