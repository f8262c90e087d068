"""Data the cloud sends down for the shop floor: the product catalog and the ledger of sold items.

Both live in `local.db` beside the outbox (SQLite, WAL) and are read by the
self-checkout and gate rules. Work runs on one dedicated thread; the event
loop never waits for the disk. sqlite-utils does the bulk catalog load; it is
imported only when a catalog arrives (it pulls in ~10 MB of CLI libraries a
gateway otherwise never needs).

Contract payloads:
  catalog/set  {"version", "currency", "products": [{"gtin", "name", "price"}]}   prices are decimal strings
  sold/add     {"epcs": [...], "reason"}
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.config_sections import DocVersion
from agent.documents import one_entry_each
from agent.storage import SqliteWorker, storage_errors, transaction
from drivers.rfid.epc import gtin_check_digit

__all__ = ["CatalogDoc", "LocalData", "Product", "SoldDoc"]

# A large store's catalog is ~100k products; beyond this a push is a mistake. Parsing takes about 0.6 KB per
# product while it is applied (63 MiB for 100,000): 500,000 would not fit the unit's MemoryMax=256M.
MAX_PRODUCTS = 100_000
# One sold/add message: an online order or a till receipt, not the whole stock.
MAX_SOLD_EPCS = 100_000
# Prices: "12.90", at most 9,999,999.9999 in the catalog's currency; a basket of 10,000 such items still adds up
# exactly in the decimal context's 28 digits.
_PRICE_INT_DIGITS = 7
_PRICE_DECIMALS = 4
_PRICE = re.compile(rf"[0-9]{{1,{_PRICE_INT_DIGITS}}}(\.[0-9]{{1,{_PRICE_DECIMALS}}})?")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (gtin TEXT PRIMARY KEY, name TEXT NOT NULL, price TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sold (
    epc TEXT PRIMARY KEY, reason TEXT NOT NULL, source TEXT NOT NULL, added_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sold_expiry ON sold (expires_at);
"""


# A catalog arrives in the tens of thousands: a slotted dataclass takes a third of a BaseModel's memory.
@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Product:
    gtin: str
    name: Annotated[str, Field(min_length=1, max_length=200)]
    price: Decimal

    @field_validator("gtin")
    @classmethod
    def _gtin14(cls, value: str) -> str:
        if not value.isdigit() or len(value) not in (8, 12, 13, 14):
            raise ValueError("a GTIN is 8, 12, 13 or 14 digits")
        value = value.zfill(14)
        if gtin_check_digit(value[:13]) != int(value[13]):
            raise ValueError(f"bad check digit in GTIN {value}")
        return value

    @field_validator("price", mode="before")
    @classmethod
    def _decimal_string(cls, value: Any) -> Any:
        # Floats lose cents; the contract says decimal strings ("12.90"). Digits only, no exponent: "1e1000000"
        # is a valid Decimal that overflows the basket's arithmetic (decimal.Overflow in every rule that adds it).
        if not isinstance(value, str):
            raise ValueError('price must be a decimal string such as "12.90"')
        if not _PRICE.fullmatch(value):
            raise ValueError(f'price must be a decimal string such as "12.90": digits, at most {_PRICE_INT_DIGITS} '
                             f"before the point and {_PRICE_DECIMALS} after, no sign or exponent (got {value[:40]!r})")
        return value


class CatalogDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: DocVersion
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    products: list[Product] = Field(max_length=MAX_PRODUCTS)

    @field_validator("products")
    @classmethod
    def _one_entry_per_gtin(cls, products: list[Product]) -> list[Product]:
        """A GTIN written two ways ("12345670", "00000012345670") is one product: its two entries are a mistake."""
        one_entry_each((p.gtin for p in products), "products", "GTIN", shown="GTIN ")
        return products


class SoldDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epcs: list[str] = Field(min_length=1, max_length=MAX_SOLD_EPCS)
    reason: str = Field(min_length=1, max_length=64)
    # A sale made elsewhere (POS, online) to a member: attributed to the offers they saw (agent/o2o/offers.py).
    member: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")
    payment_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("epcs")
    @classmethod
    def _hex(cls, value: list[str]) -> list[str]:
        out = []
        for i, epc in enumerate(value):
            if len(epc) % 2 or not 8 <= len(epc) <= 124:
                raise ValueError(f"epcs[{i}]: an EPC is 4 to 62 bytes of hex")
            try:
                out.append(bytes.fromhex(epc).hex().upper())
            except ValueError as exc:
                raise ValueError(f"epcs[{i}]: not hex") from exc
        return out


@dataclass(frozen=True, slots=True)
class CatalogItem:
    gtin: str
    name: str
    price: Decimal


class LocalData:
    """Catalog and sold ledger. `async with LocalData(path) as data:`."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = SqliteWorker(path, name="local-data", label="local data")
        self.catalog_version = 0
        self.currency = "EUR"
        self.products = 0
        # Catalog and sold ledger in memory: rules price a basket and clear a gate without touching the disk.
        self._items: dict[str, CatalogItem] = {}
        self._sold: dict[str, float] = {}  # EPC -> expires_at

    async def __aenter__(self) -> LocalData:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        await self._db.open(self._load)

    async def close(self) -> None:
        await self._db.close()

    def _load(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        items = {g: CatalogItem(g, n, Decimal(p)) for g, n, p in conn.execute("SELECT gtin, name, price FROM catalog")}
        sold = dict(conn.execute("SELECT epc, expires_at FROM sold WHERE expires_at > ?", (self._clock(),)))
        self.catalog_version = int(meta.get("catalog_version", 0))
        self.currency = meta.get("currency", "EUR")
        self._items = items
        self._sold = sold
        self.products = len(items)

    # -- catalog -------------------------------------------------------------------------------

    def lookup(self, gtin: str) -> CatalogItem | None:
        return self._items.get(gtin)

    async def replace_catalog(self, doc: CatalogDoc) -> None:
        """Swap the whole catalog in one transaction; a stale version is refused by the caller."""
        rows = ({"gtin": p.gtin, "name": p.name, "price": str(p.price)} for p in doc.products)  # one at a time
        await self._db.run(_replace, rows, doc.version, doc.currency)
        self._items = {p.gtin: CatalogItem(p.gtin, p.name, p.price) for p in doc.products}
        self.catalog_version = doc.version
        self.currency = doc.currency
        self.products = len(self._items)

    # -- sold ledger ---------------------------------------------------------------------------

    async def add_sold(self, epcs: Iterable[str], *, reason: str, source: str, ttl_s: float) -> int:
        now = self._clock()
        rows = [(e, reason, source, now, now + ttl_s) for e in epcs]
        n = await self._db.run(_add_sold, rows)
        self._sold.update((e, now + ttl_s) for e in {r[0] for r in rows})  # only once committed
        return n

    def is_sold(self, epc: str) -> bool:
        """In memory: the gate decides without waiting for the disk."""
        expires = self._sold.get(epc)
        return expires is not None and expires > self._clock()

    async def purge_expired(self) -> int:
        now = self._clock()
        self._sold = {e: t for e, t in self._sold.items() if t > now}
        return await self._db.run(_purge, now)

    @property
    def sold_count(self) -> int:
        return len(self._sold)


# -- on the worker thread ----------------------------------------------------------------------


def _replace(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]], version: int, currency: str) -> None:
    import sqlite_utils

    with storage_errors("catalog write failed"), transaction(conn):
        conn.execute("DELETE FROM catalog")
        sqlite_utils.Database(conn).table("catalog").insert_all(rows, batch_size=5000)
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         [("catalog_version", str(version)), ("currency", currency)])


def _add_sold(conn: sqlite3.Connection, rows: list[tuple[str, str, str, float, float]]) -> int:
    with storage_errors("sold ledger write failed"), transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO sold (epc, reason, source, added_at, expires_at) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def _purge(conn: sqlite3.Connection, now: float) -> int:
    with storage_errors("sold ledger purge failed"):
        return int(conn.execute("DELETE FROM sold WHERE expires_at <= ?", (now,)).rowcount)
