"""Dynamic QR codes: the `qr/set` document, where a target may point, and the codes kept in SQLite.

    qr/set  {"version", "base_url": "https://…", "allowed_hosts": ["shop.example.com", …],
             "codes": [{"code", "target", "zone", "campaign"}]}           a full replace

A printed code is `{base_url}/q/{code}`; the gateway redirects it to its
current `target`. A code is 1 to 64 letters, digits, '-' or '_' (it is a
path segment: no '/', '.', '%', '?' or spaces). A target must be an
http(s) URL whose host is one of `allowed_hosts`, with no user name (in
`https://shop.example.com@evil.example/` the host is evil.example) and no
spaces, control characters or backslashes (browsers read `\\` as `/`).
`check_targets` returns every problem with its key path (`codes[3].target`);
one bad target rejects the whole document, so what runs is always a
document ops sent whole.

`QrStore` keeps the running document in `o2o-data.db` (tables `qr_*`) on its own
SQLite thread, and the scan counts: counted in memory on each scan, added to
the table in one transaction every few seconds (a burst of scans is not a
burst of commits).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from agent.config_sections import DocVersion, Ident
from agent.storage import SqliteWorker, storage_errors, transaction

__all__ = ["CODE_RE", "QrCode", "QrDoc", "QrStore", "check_targets", "target_problem"]

# A code is a path segment of a printed URL: nothing that could leave it or need escaping.
CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
HOST_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
# A store prints a few hundred codes; a document with more is a mistake.
MAX_CODES = 10_000
MAX_HOSTS = 100
MAX_URL = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS qr_codes (
    code TEXT PRIMARY KEY, target TEXT NOT NULL, zone TEXT, campaign TEXT
);
CREATE TABLE IF NOT EXISTS qr_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS qr_scans (code TEXT PRIMARY KEY, scans INTEGER NOT NULL, last_scan REAL);
"""


class QrCode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    target: str = Field(min_length=1, max_length=MAX_URL)
    zone: Ident | None = None
    campaign: Ident | None = None

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE_RE.fullmatch(value):
            raise PydanticCustomError(
                "qr_code", "a code is 1 to 64 letters, digits, '-' or '_' (no '/', '.', '%', '?' or spaces)", {})
        return value


class QrDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: DocVersion
    base_url: str = Field(max_length=512)
    allowed_hosts: list[str] = Field(default_factory=list, max_length=MAX_HOSTS)
    codes: list[QrCode] = Field(max_length=MAX_CODES)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        problem = _url_problem(value)
        if problem is None and (urlsplit(value).query or urlsplit(value).fragment):
            problem = "no query or fragment: the code is appended as /q/{code}"
        if problem is not None:
            raise PydanticCustomError("base_url", problem, {})
        return value.rstrip("/")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for i, host in enumerate(value):
            host = host.lower().rstrip(".")
            if not HOST_RE.fullmatch(host):
                raise PydanticCustomError("host", "allowed_hosts[{i}]: not a host name: {host!r}",
                                          {"i": i, "host": host[:100]})
            out.append(host)
        return out

    def url(self, code: str) -> str:
        return f"{self.base_url}/q/{code}"


def _url_problem(url: str) -> str | None:
    """Why `url` is not a plain absolute http(s) URL, or None."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        return "spaces, control characters and backslashes are refused"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"not a URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"only http and https URLs are allowed (got {scheme + ':' if scheme else 'no scheme'})"
    if "@" in parts.netloc:
        return "a user name in the URL is refused (it hides the real host)"
    if not parts.hostname:
        return "the URL has no host"
    return None


def target_problem(target: str, allowed_hosts: Iterable[str]) -> str | None:
    """Why a redirect to `target` is refused, or None."""
    problem = _url_problem(target)
    if problem is not None:
        return problem
    host = (urlsplit(target).hostname or "").rstrip(".")
    if host not in set(allowed_hosts):
        return f"host {host!r} is not in allowed_hosts"
    return None


def check_targets(doc: QrDoc) -> list[dict[str, str]]:
    """Every problem of a parsed document, with its key path: duplicate codes, targets that may not be used."""
    errors = []
    first: dict[str, int] = {}
    hosts = set(doc.allowed_hosts)
    for i, c in enumerate(doc.codes):
        if c.code in first:
            errors.append({"path": f"codes[{i}].code", "message": f"duplicate code {c.code!r} (also codes[{first[c.code]}])"})
        else:
            first[c.code] = i
        problem = target_problem(c.target, hosts)
        if problem is not None:
            errors.append({"path": f"codes[{i}].target", "message": problem})
    return errors


@dataclass(slots=True)
class Scans:
    count: int = 0
    last: float | None = None


class QrStore:
    """The running `qr/set` document and the scan counts, in `path` (tables qr_*)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteWorker(path, name="qr-codes", label="QR codes")
        self.doc: QrDoc | None = None
        self.codes: dict[str, QrCode] = {}
        self.scans: dict[str, Scans] = {}  # committed + pending
        self._pending: dict[str, Scans] = {}

    @property
    def version(self) -> int:
        return self.doc.version if self.doc is not None else 0

    async def open(self) -> None:
        self.doc, self.scans = await self._db.open(_load) or (None, {})
        self.codes = {c.code: c for c in self.doc.codes} if self.doc is not None else {}

    async def close(self) -> None:
        await self.flush()
        await self._db.close()

    async def replace(self, doc: QrDoc) -> None:
        """Swap the whole document in one transaction; counts of codes that remain are kept."""
        await self.flush()
        await self._db.run(_replace, doc)
        self.doc = doc
        self.codes = {c.code: c for c in doc.codes}
        self.scans = {code: s for code, s in self.scans.items() if code in self.codes}
        self._pending = {code: s for code, s in self._pending.items() if code in self.codes}

    def count(self, code: str, now: float) -> None:
        for table in (self.scans, self._pending):
            s = table.get(code)
            if s is None:
                s = table[code] = Scans()
            s.count += 1
            s.last = now

    async def flush(self) -> int:
        """Add the scans counted since the last flush to the table; how many."""
        pending, self._pending = self._pending, {}
        if not pending or not self._db.is_open:
            return 0
        try:
            await self._db.run(_add_scans, [(c, s.count, s.last) for c, s in pending.items()])
        except BaseException:
            for code, s in pending.items():  # not written: try again with the next flush
                p = self._pending.setdefault(code, Scans())
                p.count += s.count
                p.last = max(p.last or 0.0, s.last or 0.0)
            raise
        return sum(s.count for s in pending.values())


# -- on the worker thread ----------------------------------------------------------------------


def _load(conn: sqlite3.Connection) -> tuple[QrDoc | None, dict[str, Scans]]:
    with storage_errors("cannot read the QR codes"):
        conn.executescript(_SCHEMA)
        meta = dict(conn.execute("SELECT key, value FROM qr_meta").fetchall())
        if "version" not in meta:
            return None, {}
        codes = [{"code": c, "target": t, "zone": z, "campaign": k}
                 for c, t, z, k in conn.execute("SELECT code, target, zone, campaign FROM qr_codes ORDER BY rowid")]
        doc = QrDoc.model_validate({"version": int(meta["version"]), "base_url": meta["base_url"],
                                    "allowed_hosts": json.loads(meta["allowed_hosts"]), "codes": codes})
        scans = {c: Scans(n, t) for c, n, t in conn.execute("SELECT code, scans, last_scan FROM qr_scans")}
    return doc, scans


def _replace(conn: sqlite3.Connection, doc: QrDoc) -> None:
    rows: list[tuple[Any, ...]] = [(c.code, c.target, c.zone, c.campaign) for c in doc.codes]
    with storage_errors("QR codes write failed"), transaction(conn):
        conn.execute("DELETE FROM qr_codes")
        conn.executemany("INSERT INTO qr_codes (code, target, zone, campaign) VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT OR REPLACE INTO qr_meta (key, value) VALUES (?, ?)", [
            ("version", str(doc.version)), ("base_url", doc.base_url),
            ("allowed_hosts", json.dumps(doc.allowed_hosts))])
        conn.execute("DELETE FROM qr_scans WHERE code NOT IN (SELECT code FROM qr_codes)")


def _add_scans(conn: sqlite3.Connection, rows: list[tuple[str, int, float | None]]) -> None:
    with storage_errors("QR scan counts write failed"), transaction(conn):
        conn.executemany(
            "INSERT INTO qr_scans (code, scans, last_scan) VALUES (?, ?, ?) "
            "ON CONFLICT(code) DO UPDATE SET scans = scans + excluded.scans, last_scan = excluded.last_scan", rows)
