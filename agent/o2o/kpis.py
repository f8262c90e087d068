"""The store's O2O measures as daily rollups, by the store's local day, kept in o2o-data.db.

Counters (offers triggered, held out, redeemed, holdout conversions, revenue
per campaign; visits per zone; Wi-Fi consents by kind; collect orders) and
samples (dwell per zone, collect wait times) accumulate in memory for the
current days and are written every `FLUSH_S` and at stop; a day's rollup is
the counters plus medians of the samples. Days are the store's (zoneinfo:
a day across a DST change is 23 or 25 hours, and its events still land in it).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from agent.json_bytes import json_bytes
from agent.storage import SqliteWorker, storage_errors, transaction

__all__ = ["KpiBook", "local_day"]

log = logging.getLogger(__name__)

# Counters and samples are written this often (and at stop): a crash loses at most this much of the day.
FLUSH_S = 10.0
# Samples kept per day and series (dwell per zone, collect waits): a reservoir keeps the median honest.
MAX_SAMPLES = 10_000
# Days kept on the gateway; the cloud has them all from kpi.daily.
KEEP_DAYS = 400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kpi_counters (day TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                         PRIMARY KEY (day, key));
CREATE TABLE IF NOT EXISTS kpi_samples (day TEXT NOT NULL, series TEXT NOT NULL, seen INTEGER NOT NULL,
                                        samples BLOB NOT NULL, PRIMARY KEY (day, series));
"""


def local_day(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).date().isoformat()


class KpiBook:
    def __init__(self, db: SqliteWorker, tz: ZoneInfo, *, rng: random.Random | None = None) -> None:
        self._db = db
        self.tz = tz
        self._rng = rng or random.Random()
        self._counters: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self._samples: dict[str, dict[str, tuple[int, list[float]]]] = defaultdict(dict)
        self._dirty: set[str] = set()

    async def open(self) -> None:
        await self._db.run(_setup)

    def day(self, ts: float) -> str:
        return local_day(ts, self.tz)

    def add(self, ts: float, key: str, amount: int | Decimal = 1) -> None:
        day = self.day(ts)
        self._counters[day][key] += Decimal(amount)
        self._dirty.add(day)

    def sample(self, ts: float, series: str, value: float) -> None:
        day = self.day(ts)
        seen, kept = self._samples[day].get(series, (0, []))
        seen += 1
        if len(kept) < MAX_SAMPLES:
            kept.append(value)
        else:  # reservoir sampling: every sample had the same chance to be kept
            j = self._rng.randrange(seen)
            if j < MAX_SAMPLES:
                kept[j] = value
        self._samples[day][series] = (seen, kept)
        self._dirty.add(day)

    async def load(self, day: str) -> None:
        """Bring a day back from disk (after a restart) so counting carries on where it stopped."""
        counters, samples = await self._db.run(_load_day, day)
        for key, value in counters.items():
            self._counters[day][key] += value
        for series, pair in samples.items():
            self._samples[day].setdefault(series, pair)

    async def flush(self) -> None:
        days, self._dirty = self._dirty, set()
        if not days:
            return
        rows = [(d, k, str(v)) for d in days for k, v in self._counters.get(d, {}).items()]
        samples = [(d, s, seen, json_bytes(kept)) for d in days for s, (seen, kept) in self._samples.get(d, {}).items()]
        cutoff = (date.fromisoformat(max(days)) - timedelta(days=KEEP_DAYS)).isoformat()
        try:
            await self._db.run(_write, rows, samples, cutoff)
        except Exception:
            self._dirty |= days  # try again next time
            raise
        today = self.day(datetime.now(self.tz).timestamp())
        for d in [d for d in self._counters if d < today and d not in self._dirty]:
            self._counters.pop(d, None)  # older days live on disk only
            self._samples.pop(d, None)

    async def rollup(self, day: str) -> dict[str, Any]:
        """The day's figures: {"day", "counters": {key: number}, "medians": {series: {median, n}}}."""
        counters, samples = await self._db.run(_load_day, day)
        for key, value in self._counters.get(day, {}).items():
            counters[key] = value  # memory is ahead of the disk for the current day
        for series, pair in self._samples.get(day, {}).items():
            samples[series] = pair
        medians = {s: {"median": round(statistics.median(kept), 1) if kept else None, "n": seen}
                   for s, (seen, kept) in samples.items()}
        return {"day": day, "counters": {k: _number(k, v) for k, v in sorted(counters.items())}, "medians": medians}

    async def days(self, last: int, today: str) -> list[dict[str, Any]]:
        start = (date.fromisoformat(today) - timedelta(days=last - 1)).isoformat()
        rows = await self._db.run(_range, start, today)
        out: dict[str, dict[str, Any]] = {}
        for day, key, value in rows:
            out.setdefault(day, {})[key] = _number(key, Decimal(value))
        for day, counters in self._counters.items():
            if start <= day <= today:
                out.setdefault(day, {}).update({k: _number(k, v) for k, v in counters.items()})
        return [{"day": d, "counters": out[d]} for d in sorted(out)]


def _number(key: str, value: Decimal) -> int | str:
    """Counts as integers; money ("…revenue") as a decimal string (never a float)."""
    return f"{value:.2f}" if key.endswith("revenue") else int(value)


# -- on the worker thread ------------------------------------------------------------------------


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _load_day(conn: sqlite3.Connection, day: str) -> tuple[dict[str, Decimal], dict[str, tuple[int, list[float]]]]:
    with storage_errors("kpi read failed"):
        counters = {k: Decimal(v) for k, v in conn.execute("SELECT key, value FROM kpi_counters WHERE day = ?", (day,))}
        samples = {s: (int(seen), list(orjson.loads(blob))) for s, seen, blob in
                   conn.execute("SELECT series, seen, samples FROM kpi_samples WHERE day = ?", (day,))}
    return counters, samples


def _write(conn: sqlite3.Connection, rows: list[tuple[str, str, str]],
           samples: list[tuple[str, str, int, bytes]], cutoff: str) -> None:
    with storage_errors("kpi write failed"), transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO kpi_counters (day, key, value) VALUES (?, ?, ?)", rows)
        conn.executemany("INSERT OR REPLACE INTO kpi_samples (day, series, seen, samples) VALUES (?, ?, ?, ?)",
                         samples)
        conn.execute("DELETE FROM kpi_counters WHERE day < ?", (cutoff,))
        conn.execute("DELETE FROM kpi_samples WHERE day < ?", (cutoff,))


def _range(conn: sqlite3.Connection, start: str, end: str) -> list[tuple[str, str, str]]:
    with storage_errors("kpi read failed"):
        return list(conn.execute("SELECT day, key, value FROM kpi_counters WHERE day BETWEEN ? AND ? ORDER BY day",
                                 (start, end)))
