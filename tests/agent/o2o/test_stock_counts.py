"""StockCounts without a daemon: inventory rounds on a hand-moved clock, moves, sales, bounds, alerts."""

from __future__ import annotations

import pytest

from agent.o2o.stock_counts import SOLD_ON_FLOOR, UNPAID_IN_FITTING, StockCounts

ROLES = {"shoes": "floor", "shirts": "floor", "back": "stockroom", "try": "fitting", "sco": "checkout"}
G1, G2 = "03012345000116", "03012345000123"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, sold: set[str] | None = None, **kw: object) -> StockCounts:
    sold = sold if sold is not None else set()
    args: dict = {"gone_after_s": 2.0, "missing_rounds": 3, "max_epcs": 1000, **kw}
    return StockCounts(ROLES, is_sold=sold.__contains__, clock=clock, **args)


def test_a_tag_missed_for_fewer_rounds_than_configured_stays_counted(clock: Clock) -> None:
    s = make(clock)
    s.reader_online("r1")
    s.seen("E1", G1, "shoes", "r1")
    assert s.counts == {G1: {"shoes": 1}}
    clock.t += 2.0
    s.gone("E1", "shoes", "r1", "timeout")  # one round already missed
    clock.t += 3.9  # 2.95 rounds since the last read
    assert s.expire() == 0 and s.counts == {G1: {"shoes": 1}} and s.missing == 1
    s.seen("E1", G1, "shoes", "r1")  # read again: no longer missing
    assert s.missing == 0
    clock.t += 2.0
    s.gone("E1", "shoes", "r1", "timeout")
    clock.t += 3.5
    assert s.expire() == 0 and s.next_due() == pytest.approx(clock.t + 0.5)  # a look tells when the next is due
    clock.t += 0.5
    assert s.expire() == 1 and s.counts == {} and len(s) == 0


def test_an_offline_reader_completes_no_round(clock: Clock) -> None:
    s = make(clock)
    s.reader_online("r1")
    s.seen("E1", G1, "shoes", "r1")
    clock.t += 0.5
    s.gone("E1", "shoes", "r1", "reader_offline")
    s.reader_offline("r1")
    assert s.next_due() is not None  # stale until the next look; the look finds nothing due
    clock.t += 3600
    assert s.expire() == 0 and s.counts == {G1: {"shoes": 1}} and s.next_due() is None
    s.reader_online("r1")
    clock.t += 5.9
    assert s.expire() == 0
    clock.t += 0.1
    assert s.expire() == 1 and s.counts == {}


def test_rounds_are_per_reader(clock: Clock) -> None:
    s = make(clock)
    s.reader_online("r1")
    s.reader_online("r2")
    s.seen("E1", G1, "shoes", "r1")
    s.seen("E2", G1, "back", "r2")
    clock.t += 2
    s.gone("E1", "shoes", "r1", "timeout")
    s.gone("E2", "back", "r2", "timeout")
    s.reader_offline("r2")
    clock.t += 10
    assert s.expire() == 1 and s.counts == {G1: {"back": 1}}
    assert s.rounds("r1") == pytest.approx(6.0) and s.rounds("r2") == pytest.approx(1.0)


def test_moves_and_cross_reads(clock: Clock) -> None:
    s = make(clock)
    s.seen("E1", G1, "back", "r2")
    s.seen("E1", G1, "shoes", "r1")  # carried out: the newest arrival wins while both still see it
    assert s.counts == {G1: {"shoes": 1}}
    s.gone("E1", "back", "r2", "timeout")
    assert s.counts == {G1: {"shoes": 1}} and s.missing == 0
    s.seen("E1", G1, "shirts", "r1")  # an antenna of the next shelf catches it once
    assert s.counts == {G1: {"shirts": 1}}
    s.gone("E1", "shirts", "r1", "timeout")  # the cross-read ends: it is where "shoes" still sees it
    assert s.counts == {G1: {"shoes": 1}} and s.missing == 0
    changes = s.take_changes()
    assert sorted(changes) == [(G1, "shoes", 1)]  # back 0 -> 0, shirts 0 -> 0: nothing to tell
    assert s.take_changes() == []


def test_zones_outside_stock_and_tags_without_gtin_are_ignored(clock: Clock) -> None:
    s = make(clock)
    s.seen("E1", G1, "entrance", "r1")
    s.seen("E2", None, "shoes", "r1")
    assert s.counts == {} and len(s) == 0 and s.no_gtin == 1
    s.seen("E3", G1, "shoes", "r1")
    s.seen("E3", G1, "entrance", "r9")  # a zone stock does not know: the item stays where stock saw it
    assert s.counts == {G1: {"shoes": 1}}


def test_sold_items_are_not_counted(clock: Clock) -> None:
    sold: set[str] = {"E2"}
    s = make(clock, sold)
    for epc in ("E1", "E2", "E3"):
        s.seen(epc, G1, "shoes", "r1")
    assert s.counts == {G1: {"shoes": 2}}
    sold.add("E1")
    assert s.refresh_sold(["E1", "unknown"]) == 1 and s.counts == {G1: {"shoes": 1}}
    sold.discard("E2")  # a sold-ledger entry expired
    assert s.refresh_sold() == 1 and s.counts == {G1: {"shoes": 2}}
    assert [m.epc for m in s.misplaced(3600)] == ["E1"]
    assert s.misplaced(3600)[0].reason == SOLD_ON_FLOOR


def test_unpaid_in_a_fitting_room_too_long(clock: Clock) -> None:
    s = make(clock)
    s.seen("E1", G1, "try", "r3")
    clock.t += 3599
    assert s.misplaced(3600) == []
    clock.t += 1
    (m,) = s.misplaced(3600)
    assert (m.epc, m.zone, m.reason, m.for_s) == ("E1", "try", UNPAID_IN_FITTING, 3600)
    s.seen("E1", G1, "sco", "r4")  # on its way to be paid
    assert s.misplaced(3600) == []


def test_replenish(clock: Clock) -> None:
    s = make(clock)
    s.seen("A1", G1, "shoes", "r1")
    s.seen("A2", G1, "back", "r2")
    s.seen("A3", G1, "back", "r2")
    s.seen("B1", G2, "shoes", "r1")
    s.seen("B2", G2, "shirts", "r1")
    s.seen("B3", G2, "back", "r2")
    r = s.replenish(1)
    assert [(x.gtin, x.floor, x.stockroom) for x in r] == [(G1, 1, 2)]
    assert [x.gtin for x in s.replenish(2)] == [G1, G2]
    assert s.by_role() == {"checkout": 0, "fitting": 0, "floor": 3, "stockroom": 3}


def test_bounded(clock: Clock) -> None:
    s = make(clock, max_epcs=100)
    for i in range(150):
        s.seen(f"E{i}", G1, "shoes", "r1")
    assert len(s) == 100 and s.dropped == 50 and s.counts == {G1: {"shoes": 100}}
    s.seen("E1", G1, "back", "r2")  # a tracked tag still moves
    assert s.counts == {G1: {"shoes": 99, "back": 1}}


def test_configure_in_place(clock: Clock) -> None:
    s = make(clock)
    s.seen("E1", G1, "shoes", "r1")
    s.seen("E2", G1, "try", "r3")
    s.configure({"shoes": "floor"}, gone_after_s=1.0, missing_rounds=2, max_epcs=10)
    assert s.counts == {G1: {"shoes": 1}} and len(s) == 1
    clock.t += 1
    s.gone("E1", "shoes", "r1", "timeout")
    clock.t += 1
    assert s.expire() == 1


def test_a_removed_reader_s_missing_tags_count_on_a_fresh_clock(clock: Clock) -> None:
    s = make(clock)
    s.reader_online("old")
    s.seen("E1", G1, "shoes", "old")
    s.gone("E1", "shoes", "old", "reader_offline")
    s.reader_offline("old")
    s.forget_readers(["r1"])
    assert s.expire() == 0
    clock.t += 6
    assert s.expire() == 1


def test_take_changes_is_limited_and_keeps_the_rest(clock: Clock) -> None:
    s = make(clock)
    for i in range(10):
        s.seen(f"E{i}", f"{i:014d}", "shoes", "r1")
    first = s.take_changes(4)
    assert len(first) == 4 and s.pending_changes == 6
    assert len(s.take_changes()) == 6 and s.pending_changes == 0
