"""The product catalog and the sold ledger as a component: `catalog/set`, `sold/add`, their status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.catalog import CatalogDoc, LocalData, SoldDoc
from agent.component import Component, Context, Document
from agent.documents import Report, applied, rejected, take_versioned, validation_errors

__all__ = ["Catalog", "CatalogStatus"]

log = logging.getLogger(__name__)

# Expired sold-ledger entries leave memory and disk this often.
PURGE_EVERY_S = 3600.0
# agent.catalog.MAX_PRODUCTS (100,000) products with long names; anything bigger is refused before it is parsed.
MAX_CATALOG_BYTES = 24 * 1024 * 1024


class CatalogStatus(BaseModel):
    version: int
    products: int
    currency: str
    sold: int


class Catalog(Component):
    key = "catalog"
    status_model = CatalogStatus

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.data = LocalData(ctx.storage_dir / "local.db")

    async def start(self) -> None:
        await self.data.open()
        if self.ctx.demo and self.data.catalog_version == 0:
            await self._load_demo_catalog()

    async def stop(self) -> None:
        await self.data.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("sold ledger purge", self._purge)]

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            n = await self.data.purge_expired()
            if n:
                log.info("sold ledger: %d expired item(s) forgotten", n)

    def status(self) -> CatalogStatus:
        d = self.data
        return CatalogStatus(version=d.catalog_version, products=d.products, currency=d.currency, sold=d.sold_count)

    def documents(self) -> Iterable[Document]:
        yield Document("catalog/set", self.on_catalog, "catalog/reported", max_bytes=MAX_CATALOG_BYTES,
                       refused=lambda errors: rejected(None, errors, self.data.catalog_version))
        yield Document("sold/add", self.on_sold)

    async def on_catalog(self, payload: bytes, retained: bool = False) -> Report | None:
        return await take_versioned("catalog", CatalogDoc, payload, retained, running=self.data.catalog_version,
                                    apply=self._apply_catalog, max_bytes=MAX_CATALOG_BYTES)

    async def _apply_catalog(self, doc: CatalogDoc) -> Report:
        await self.data.replace_catalog(doc)
        self.ctx.publish("catalog.updated", {"version": doc.version, "currency": doc.currency,
                                             "products": len(doc.products)})
        log.info("catalog: version %d, %d products (%s)", doc.version, len(doc.products), doc.currency)
        return applied(doc.version, products=len(doc.products))

    async def on_sold(self, payload: bytes, retained: bool = False) -> Report | None:
        try:
            doc = SoldDoc.model_validate_json(payload)
        except ValidationError as exc:
            errors = validation_errors(exc)
            log.warning("sold/add rejected: %s", errors[0]["message"])
            self.ctx.publish("sold.rejected", {"error": errors[0]["message"], "problems": exc.error_count()})
            return None
        extra: dict[str, Any] = {}
        if doc.member is not None:  # what was bought, priced from the catalog, for the offers' attribution
            extra = {"member": doc.member, "payment_id": doc.payment_id, "items_sold": self._items(doc.epcs)}
        await self.add_sold(doc.epcs, reason=doc.reason, source="cloud", extra=extra)
        return None

    def _items(self, epcs: list[str]) -> list[dict[str, Any]]:
        from drivers.rfid.epc import decode_sgtin

        out = []
        for epc in epcs:
            sgtin = decode_sgtin(bytes.fromhex(epc))
            if sgtin is not None:
                item = self.data.lookup(sgtin.gtin)
                out.append({"gtin": sgtin.gtin, "price": str(item.price) if item else None})
        return out

    async def add_sold(self, epcs: list[str], *, reason: str, source: str,
                       extra: dict[str, Any] | None = None) -> int:
        """Durable before it returns: a gate must never alarm for these once this is done."""
        ttl_s = self.ctx.config.checkout.sold_ttl_days * 86400
        n = await self.data.add_sold(epcs, reason=reason, source=source, ttl_s=ttl_s)
        self.ctx.publish("sold.added", {"count": n, "reason": reason, **(extra or {})})
        log.info("sold ledger: %d EPC(s) added (%s)", n, reason)
        return n

    async def _load_demo_catalog(self) -> None:
        """--demo: the simulated items get names and prices, so baskets show what a shopper would see."""
        from drivers.rfid.epc import gtin_check_digit
        from drivers.rfid.simulator import DEMO_PRODUCTS

        products = [{"gtin": body + str(gtin_check_digit(body)), "name": name, "price": f"{19 + 10 * i}.90"}
                    for i, (name, body) in enumerate(DEMO_PRODUCTS)]
        doc = CatalogDoc.model_validate({"version": 1, "currency": "EUR", "products": products})
        await self._apply_catalog(doc)
        log.info("demo: catalog of %d products loaded", len(products))
