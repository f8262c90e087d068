"""Baskets and gates as pure rules, with a fake catalog and a controlled clock."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from agent.config import GateConfig, StationConfig
from agent.rules.checkout import CheckoutRules, PaymentError, Receipt
from agent.rules.gate import GateRules


@dataclass
class Item:
    gtin: str
    name: str
    price: Decimal


class FakeCatalog:
    currency = "EUR"

    def __init__(self) -> None:
        self.items = {"01": Item("01", "Shoe", Decimal("89.90")), "02": Item("02", "Sock", Decimal("4.95"))}
        self.sold: set[str] = set()

    def lookup(self, gtin: str) -> Item | None:
        return self.items.get(gtin)

    def is_sold(self, epc: str) -> bool:
        return epc in self.sold


def station(sid: str, zones: list[str], settle_s: float = 0.5) -> StationConfig:
    return StationConfig(id=sid, zones=zones, token="t", settle_s=settle_s)  # type: ignore[arg-type]


def seen(epc: str, zone: str, gtin: str | None = "01", rssi: int | None = -50) -> dict[str, object]:
    return {"epc": epc, "zone": zone, "gtin": gtin, "rssi": rssi}


@pytest.fixture
def clock() -> list[float]:
    return [100.0]


@pytest.fixture
def rules(clock: list[float]) -> tuple[CheckoutRules, FakeCatalog]:
    cat = FakeCatalog()
    return CheckoutRules([station("a", ["za"]), station("b", ["zb"])], cat, clock=lambda: clock[0]), cat


def test_lines_group_by_gtin_with_decimal_totals(rules) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    for epc, gtin in [("E1", "01"), ("E2", "02"), ("E3", "02"), ("E4", "02")]:
        r.on_seen(seen(epc, "za", gtin))
    b = r.basket("a")
    assert [(ln.name, ln.qty, ln.unit_price, ln.amount) for ln in b.lines] == [
        ("Shoe", 1, Decimal("89.90"), Decimal("89.90")), ("Sock", 3, Decimal("4.95"), Decimal("14.85"))]
    assert b.total == Decimal("104.75") and b.to_dict()["total"] == "104.75"
    assert b.to_dict()["lines"][1]["epcs"] == ["E2", "E3", "E4"]


def test_unknown_items_are_shown_not_ignored(rules) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    r.on_seen(seen("E1", "za", "99"))  # not in the catalog
    r.on_seen(seen("E2", "za", None))  # not an SGTIN
    b = r.basket("a")
    assert b.unknown == 2 and [ln.name for ln in b.lines] == ["Unknown item", "Unknown item"]
    assert b.total == 0


def test_cross_read_goes_to_the_louder_station(rules) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    r.on_seen(seen("E1", "za", rssi=-70))
    assert r.basket("a").epcs == ["E1"]
    changed = r.on_seen(seen("E1", "zb", rssi=-45))
    assert changed == {"a", "b"}
    assert r.basket("a").epcs == [] and r.basket("b").epcs == ["E1"]
    r.on_gone({"epc": "E1", "zone": "zb"})  # taken off b: still read by a, so back to a
    assert r.basket("a").epcs == ["E1"] and r.basket("b").epcs == []


def test_basket_id_changes_with_content_and_settles(rules, clock) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    first = r.basket("a").basket_id
    r.on_seen(seen("E1", "za"))
    b = r.basket("a")
    assert b.basket_id != first and not b.settled
    assert r.due_announcements() == []
    assert r.next_settle_in() == pytest.approx(0.5)
    clock[0] += 0.5
    (announced,) = r.due_announcements()
    assert announced.basket_id == b.basket_id and announced.settled
    assert r.due_announcements() == []  # announced once


def test_payment_checks_and_idempotency(rules) -> None:  # type: ignore[no-untyped-def]
    r, cat = rules
    r.on_seen(seen("E1", "za"))
    b = r.basket("a")
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p1", "nope", b.total)
    assert e.value.status == 404
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p1", b.basket_id, Decimal("1.00"))
    assert e.value.status == 409 and "differs" in e.value.message
    basket = r.check_payment("a", "p1", b.basket_id, b.total)
    receipt = r.record_payment("p1", basket, 1.0)  # type: ignore[arg-type]
    cat.sold.add("E1")
    assert r.basket("a").lines == []  # paid items leave the basket
    again = r.check_payment("a", "p1", b.basket_id, b.total)
    assert isinstance(again, Receipt) and again is receipt  # a retry gets the same receipt
    r.on_seen(seen("E2", "za", "02"))
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p1", r.basket("a").basket_id, r.basket("a").total)
    assert e.value.status == 409 and "already used" in e.value.message
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p2", b.basket_id, b.total)
    assert e.value.status == 409 and "changed since" in e.value.message


def test_unknown_items_block_payment(rules) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    r.on_seen(seen("E1", "za", "99"))
    b = r.basket("a")
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p", b.basket_id, b.total)
    assert e.value.status == 409 and "call staff" in e.value.message


def test_empty_basket_cannot_be_paid(rules) -> None:  # type: ignore[no-untyped-def]
    r, _ = rules
    b = r.basket("a")
    with pytest.raises(PaymentError) as e:
        r.check_payment("a", "p", b.basket_id, Decimal(0))
    assert e.value.status == 409


def test_gate_alarms_once_per_passage_and_never_for_paid_items(clock) -> None:  # type: ignore[no-untyped-def]
    cat = FakeCatalog()
    gates = GateRules([GateConfig(id="exit-1", zones=["exit"], rearm_s=10)], cat, clock=lambda: clock[0])
    assert gates.on_seen(seen("E9", "shoes")) is None  # not a gate zone
    alarm = gates.on_seen(seen("E1", "exit"))
    assert alarm is not None and alarm.to_dict() == {"gate": "exit-1", "zone": "exit", "epc": "E1", "gtin": "01",
                                                     "name": "Shoe"}
    clock[0] += 3
    assert gates.on_seen(seen("E1", "exit")) is None and gates.suppressed == 1  # flicker at the edge
    clock[0] += 10
    assert gates.on_seen(seen("E1", "exit")) is not None  # a new passage later
    cat.sold.add("E2")
    assert gates.on_seen(seen("E2", "exit")) is None
    unknown = gates.on_seen(seen("E3", "exit", None))
    assert unknown is not None and unknown.name == "Unknown item"
