"""The catalog as central ops send it: bounded prices, one entry per GTIN, and an answer to every message."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.component import Document
from agent.errors import StorageError
from agent.sync.client import Message
from agent.sync.downlink import Downlink
from agent.sync.topics import Topics
from tests.conftest import make_config


def catalog(*products: tuple[str, str], version: int = 2) -> bytes:
    return json.dumps({"version": version, "currency": "EUR",
                       "products": [{"gtin": g, "name": f"item {g}", "price": p} for g, p in products]}).encode()


@pytest.fixture
async def running(tmp_path: Path, start_agent):  # type: ignore[no-untyped-def]
    ra = await start_agent(make_config(tmp_path, mqtt={"enabled": False}))
    comp = ra.agent["catalog"]
    assert (await comp.on_catalog(catalog(("12345670", "9.90"), version=1)))["status"] == "applied"
    return comp


@pytest.mark.parametrize("price", ["1e1000000", "1E3", "12345678", "-1", "1.23456", "NaN", "Infinity", "12.",
                                   " 1", "1_000", "\u0661\u0662", "9" * 5000])
async def test_unbounded_prices_are_rejected_with_their_path(running, price: str) -> None:  # type: ignore[no-untyped-def]
    """Before: "1e1000000" was taken, and every rule adding it to a basket crashed on decimal.Overflow."""
    report = await running.on_catalog(catalog(("96385074", price)))
    assert report["status"] == "rejected"
    assert report["errors"][0]["path"] == "products[0].price"
    assert "decimal string" in report["errors"][0]["message"]
    assert running.data.catalog_version == 1  # nothing changed


async def test_a_catalog_beyond_the_bounds_is_refused_whole(running) -> None:  # type: ignore[no-untyped-def]
    """A catalog that would not fit the unit's memory while parsed is refused, by count or by size, not applied."""
    from agent.catalog import MAX_PRODUCTS
    from agent.components.catalog import MAX_CATALOG_BYTES
    from drivers.rfid.epc import gtin_check_digit

    def gtin(i: int) -> str:
        g13 = f"{3012345000000 + i:013d}"
        return g13 + str(gtin_check_digit(g13))

    report = await running.on_catalog(catalog(*((gtin(i), "1.00") for i in range(MAX_PRODUCTS + 1))))
    assert report["status"] == "rejected" and [e["path"] for e in report["errors"]] == ["products"]
    report = await running.on_catalog(b'{"version": 2, "currency": "EUR", "products": []' + b" " * MAX_CATALOG_BYTES
                                      + b"}")
    assert report["status"] == "rejected" and "payload too large" in report["errors"][0]["message"]
    assert running.data.catalog_version == 1 and running.data.products == 1  # nothing changed
    report = await running.on_catalog(catalog(*((gtin(i), "1.00") for i in range(MAX_PRODUCTS))))
    assert report["status"] == "applied" and running.data.products == MAX_PRODUCTS  # exactly the bound is fine


@pytest.mark.parametrize("price", ["0", "0.5", "12.90", "9999999.9999"])
async def test_ordinary_and_largest_prices_are_taken(running, price: str) -> None:  # type: ignore[no-untyped-def]
    assert (await running.on_catalog(catalog(("96385074", price))))["status"] == "applied"
    item = running.data.lookup("00000096385074")
    assert item is not None and item.price == Decimal(price)
    assert item.price * 10_000 == Decimal(price) * 10_000  # a full basket still adds up exactly


async def test_one_gtin_written_two_ways_is_rejected_not_a_storage_error(running) -> None:  # type: ignore[no-untyped-def]
    """Before: both spellings normalised to one GTIN, the UNIQUE insert failed and no report was sent."""
    report = await running.on_catalog(catalog(("12345670", "1.00"), ("96385074", "2.00"), ("00000012345670", "3.00")))
    assert report["status"] == "rejected"
    assert report["errors"][0]["path"] == "products"
    assert "products[2] repeats products[0] (GTIN 00000012345670)" in report["errors"][0]["message"]
    assert running.data.catalog_version == 1 and running.data.lookup("00000012345670").price == Decimal("9.90")


async def test_a_handler_that_fails_is_still_answered() -> None:
    """Whatever escapes a document handler (a StorageError, a bug), ops get a rejected report, not silence."""
    sent: list[tuple[str, dict[str, Any], bool]] = []

    async def publish(topic: str, payload: dict[str, Any], retain: bool) -> bool:
        sent.append((topic, payload, retain))
        return True

    async def broken(payload: bytes, retained: bool) -> dict[str, Any] | None:
        raise StorageError("catalog write failed: UNIQUE constraint failed: catalog.gtin")

    topics = Topics("s", "g")
    down = Downlink(topics, documents=lambda: {"catalog/set": Document("catalog/set", broken, "catalog/reported")},
                    commands=dict, publish=publish)
    await down.handle(Message(f"{topics.base}/catalog/set", b"{}", 1, False))
    ((topic, report, retain),) = sent
    assert topic == f"{topics.base}/catalog/reported" and retain
    assert report["status"] == "rejected" and "internal error: StorageError" in report["errors"][0]["message"]
