"""Event model and ids: sortable, unique, contract JSON."""

from __future__ import annotations

import json
import threading

from agent.events import Event, EventModel, Priority, format_ts, priority_of
from agent.ids import UlidGenerator, ulid_time_ms


def test_ids_sort_in_creation_order_within_one_millisecond() -> None:
    gen = UlidGenerator(clock_ms=lambda: 1_700_000_000_000)
    ids = [gen() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert all(len(i) == 26 for i in ids)
    assert ulid_time_ms(ids[0]) == 1_700_000_000_000


def test_ids_keep_order_when_the_clock_steps_back() -> None:
    times = iter([2000, 1000, 1000, 3000])
    gen = UlidGenerator(clock_ms=lambda: next(times))
    ids = [gen() for _ in range(4)]
    assert ids == sorted(ids)


def test_ids_unique_across_threads() -> None:
    gen = UlidGenerator()
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [gen() for _ in range(2000)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 8000


def test_ulid_time_round_trip() -> None:
    for ms in (0, 1, 1_763_891_234_567, (1 << 48) - 1):
        assert ulid_time_ms(UlidGenerator(clock_ms=lambda ms=ms: ms)()) == ms


def test_format_ts_is_rfc3339_utc_with_milliseconds() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_763_891_234.5678) == "2025-11-23T09:47:14.567Z"
    assert format_ts(1_763_891_235.001) == "2025-11-23T09:47:15.001Z"  # the cached second prefix moves on


def test_event_json_is_the_contract_form() -> None:
    e = Event("tag.seen", "checkout-1", {"epc": "30", "rssi": -50}, ts=1_763_891_234.5)
    doc = json.loads(e.to_json())
    assert set(doc) == {"id", "ts", "kind", "source", "data"}
    assert doc["ts"] == "2025-11-23T09:47:14.500Z"
    assert doc["data"] == {"epc": "30", "rssi": -50}
    EventModel.model_validate(doc)


def test_priorities_put_sales_and_alarms_last_to_drop() -> None:
    assert priority_of("tag.seen") == Priority.TELEMETRY
    assert priority_of("reader.offline") == Priority.OPERATIONAL
    assert priority_of("gate.alarm") == Priority.BUSINESS
    assert priority_of("checkout.paid") == Priority.BUSINESS
    assert priority_of("something.new") == Priority.OPERATIONAL


def test_to_json_carries_any_number_a_document_may_hold() -> None:
    """orjson stops at 64-bit integers: the event is still encoded (the standard library takes over)."""
    from dataclasses import dataclass
    from decimal import Decimal

    from agent.json_bytes import json_bytes

    @dataclass(slots=True)
    class Item:
        qty: int

    e = Event("test.big", "gw", {"n": 10**26, "m": -(2**64), "price": Decimal("1.50"), "item": Item(2**70)})
    assert json.loads(e.to_json())["data"] == {"n": 10**26, "m": -(2**64), "price": "1.50", "item": {"qty": 2**70}}
    assert json_bytes({"a": 1, "é": "ü"}) == '{"a":1,"é":"ü"}'.encode()  # the fast path: compact UTF-8
    assert json.loads(json_bytes({"a": 2**64, "é": "ü"})) == {"a": 2**64, "é": "ü"}
