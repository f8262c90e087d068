"""What the offers rule keeps in o2o-data.db: the campaigns in force and every exposure (for caps and attribution)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson

from agent.json_bytes import json_bytes
from agent.storage import storage_errors, transaction

__all__ = ["Exposure", "forget_member", "load_state", "save_campaigns", "save_exposures"]

# Exposures older than this are not loaded back (no attribution window is longer) and are deleted.
KEEP_S = 90 * 86400
# At most this many exposures are loaded back at start (a store's quarter is far less).
MAX_LOADED = 500_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS offer_campaigns (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,
                                            doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS offer_exposures (campaign TEXT NOT NULL, member TEXT NOT NULL, variant TEXT,
                                            held_out INTEGER NOT NULL, ts REAL NOT NULL, day TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS offer_exposures_ts ON offer_exposures (ts);
CREATE INDEX IF NOT EXISTS offer_exposures_member ON offer_exposures (member);
"""


@dataclass(frozen=True, slots=True)
class Exposure:
    """A member was shown a campaign's offer (or held out of it), at `ts` (wall), on the store's `day`."""

    campaign: str
    member: str
    variant: str | None
    held_out: bool
    ts: float
    day: str


def load_state(conn: sqlite3.Connection) -> tuple[int, dict[str, Any] | None, list[Exposure]]:
    conn.executescript(_SCHEMA)
    cutoff = time.time() - KEEP_S
    with storage_errors("offers read failed"):
        conn.execute("DELETE FROM offer_exposures WHERE ts < ?", (cutoff,))
        row = conn.execute("SELECT version, doc FROM offer_campaigns WHERE id = 1").fetchone()
        rows = conn.execute("SELECT campaign, member, variant, held_out, ts, day FROM offer_exposures "
                            "WHERE ts >= ? ORDER BY ts DESC LIMIT ?", (cutoff, MAX_LOADED)).fetchall()
    exposures = [Exposure(c, m, v, bool(h), float(ts), d) for c, m, v, h, ts, d in reversed(rows)]
    if row is None:
        return 0, None, exposures
    return int(row[0]), orjson.loads(row[1]), exposures


def save_campaigns(conn: sqlite3.Connection, version: int, doc: dict[str, Any]) -> None:
    with storage_errors("campaigns write failed"), transaction(conn):
        conn.execute("INSERT OR REPLACE INTO offer_campaigns (id, version, doc) VALUES (1, ?, ?)",
                     (version, json_bytes(doc)))


def save_exposures(conn: sqlite3.Connection, exposures: list[Exposure]) -> None:
    with storage_errors("exposure write failed"), transaction(conn):
        conn.executemany("INSERT INTO offer_exposures (campaign, member, variant, held_out, ts, day) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(e.campaign, e.member, e.variant, int(e.held_out), e.ts, e.day) for e in exposures])


def forget_member(conn: sqlite3.Connection, member: str) -> None:
    with storage_errors("exposure delete failed"), transaction(conn):
        conn.execute("DELETE FROM offer_exposures WHERE member = ?", (member,))
