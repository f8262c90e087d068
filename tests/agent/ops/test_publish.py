"""`ops publish KIND FILE`: validated locally, published on `{kind}/set` (`collect/add`), answered on `{kind}/reported`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.ops.conftest import FakeGateway, Result, TestFleet
from tests.conftest import Mosquitto

CATALOG = {"version": 3, "currency": "EUR", "products": [
    {"gtin": "4006381333931", "name": "Pen", "price": "1.50"},
    {"gtin": "5901234123457", "name": "Notebook", "price": "3.20"},
]}


def write(tmp_path: Path, doc: Any, name: str = "doc.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("s")}


def test_catalog_to_real_gateways(fleet: TestFleet, ops: Callable[..., Result], tmp_path: Path) -> None:
    fleet.add("s1", "gw-a")
    fleet.add("s1", "gw-b")
    r = ops("publish", "catalog", write(tmp_path, CATALOG), "--store", "s1", "--wait", "15")
    assert r.code == 0, r
    assert r.out.splitlines()[0].endswith("doc.json: validated with agent.catalog.CatalogDoc")
    assert rows(r.out)["s1/gw-a"][1:] == ["-", "->", "3", "applied"]
    assert [json.loads(p)["products"] for p in fleet.watch.payloads("o2o/v1/s1/gw-b/catalog/reported")] == [2]

    r = ops("publish", "catalog", write(tmp_path, CATALOG), "--store", "s1")  # the same version again
    assert r.code == 2
    assert "catalog version 3 is not newer than what runs (s1/gw-a has 3, s1/gw-b has 3)" in r.err

    bad = {**CATALOG, "products": [{"gtin": "4006381333932", "name": "Pen", "price": 1.5}]}
    r = ops("publish", "catalog", write(tmp_path, bad), "--all")
    assert r.code == 2 and r.out == ""
    assert "products[0].gtin: Value error, bad check digit in GTIN 04006381333932" in r.err
    assert 'products[0].price: Value error, price must be a decimal string such as "12.90"' in r.err
    time.sleep(0.3)
    assert len(fleet.watch.payloads("o2o/v1/s1/gw-a/catalog/set")) == 1


def test_catalog_with_a_duplicate_gtin_is_refused_locally(ops: Callable[..., Result], tmp_path: Path) -> None:
    twice = {**CATALOG, "products": [*CATALOG["products"], {"gtin": "04006381333931", "name": "Pen", "price": "1.50"}]}
    r = ops("publish", "catalog", write(tmp_path, twice), "--all")
    assert r.code == 2 and r.out == ""
    assert "products: Value error, one entry per GTIN: products[2] repeats products[0] (GTIN 04006381333931)" in r.err


@pytest.fixture
def reporter(mosquitto: Mosquitto) -> Iterator[FakeGateway]:
    """A gateway that applies every members, campaigns and qr document and reports it."""

    def handle(topic: str, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind, _, verb = topic.partition("/")
        if verb == "set" and kind in ("members", "campaigns", "qr"):
            return [(f"{kind}/reported", {"version": doc["version"], "status": "applied", "errors": []})]
        return []

    gw = FakeGateway(mosquitto, "s7", "gw-x", handle)
    yield gw
    gw.close()


MEMBERS = {"version": 2, "members": [{"member": "L1001", "ibeacon": {"uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
                                                                     "major": 1, "minor": 2},
                                      "consents": {"personalisation": True, "marketing": False}, "segments": []}]}


def test_members_campaigns_qr_are_checked_published_retained_and_reported(
        reporter: FakeGateway, ops: Callable[..., Result], tmp_path: Path) -> None:
    docs = {"members": MEMBERS, "campaigns": {"version": 1, "campaigns": []},
            "qr": {"version": 1, "base_url": "https://example.com", "allowed_hosts": [], "codes": []}}
    for kind, doc in docs.items():
        r = ops("publish", kind, write(tmp_path, doc), "--all", "--wait", "10")
        assert r.code == 0, r
        how = r.out.splitlines()[0]
        assert "validated with agent.o2o." in how or (f"agent.o2o.{kind}." in how and "checked only the top-level keys" in how)
        assert rows(r.out)["s7/gw-x"][1:] == ["-", "->", str(doc["version"]), "applied"]
    assert [t for t, _ in reporter.received] == ["members/set", "campaigns/set", "qr/set"]

    r = ops("publish", "members", write(tmp_path, {"version": 3, "member": []}), "--all")
    assert r.code == 2 and r.out == ""
    assert "members:" in r.err and "required" in r.err.lower()
    assert "member:" in r.err  # the misspelt key


def test_collect_goes_to_online_gateways_only(fleet: TestFleet, mosquitto: Mosquitto, ops: Callable[..., Result],
                                              tmp_path: Path) -> None:
    fleet.add("s7", "gw-here")
    gone = FakeGateway(mosquitto, "s7", "gw-gone", lambda t, d: [])
    gone.close()
    order = {"orders": [{"order_id": "A1", "member": "L1001", "pickup_point": "desk",
                         "items": [{"gtin": "4006381333931"}]}]}
    r = ops("publish", "collect", write(tmp_path, order), "--store", "s7", "--wait", "10")
    assert r.code == 1, r  # one of the two could not get it
    table = rows(r.out)
    assert " ".join(table["s7/gw-here"][1:]) == "- applied orders: A1"
    assert " ".join(table["s7/gw-gone"][1:]) == "- stopped not sent: collect/add is not kept for offline gateways"
    assert [json.loads(p) for p in fleet.watch.payloads("o2o/v1/s7/gw-here/collect/add")] == [order]
    assert not fleet.watch.payloads("o2o/v1/s7/gw-gone/collect/add")
