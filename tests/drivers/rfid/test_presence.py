"""Tag-read smoothing with a controlled clock: appear once, gone after gone_after_s of silence."""

from __future__ import annotations

import pytest

from drivers.rfid.presence import ZonePresence


def test_first_read_appears_repeats_do_not() -> None:
    p = ZonePresence(3.0)
    assert p.observe("E1", "checkout", 1, -50, now=0.0) is not None
    for t in (0.1, 0.2, 2.9):
        assert p.observe("E1", "checkout", 1, -48, now=t) is None
    assert len(p) == 1


def test_gone_after_silence_measured_from_the_last_read() -> None:
    p = ZonePresence(3.0)
    p.observe("E1", "checkout", 1, -50, now=0.0)
    p.observe("E1", "checkout", 1, -50, now=2.0)
    assert p.expire(now=4.9) == []
    (gone,) = p.expire(now=5.0)
    assert (gone.epc, gone.zone, gone.reads, gone.first_seen, gone.last_seen) == ("E1", "checkout", 2, 0.0, 2.0)
    assert len(p) == 0
    assert p.observe("E1", "checkout", 1, -50, now=6.0) is not None  # a new appearance


def test_same_tag_in_two_zones_is_two_presences() -> None:
    p = ZonePresence(1.0)
    assert p.observe("E1", "checkout", 1, None, now=0.0) is not None
    assert p.observe("E1", "exit", 2, None, now=0.5) is not None
    assert ("checkout", "E1") in p and ("exit", "E1") in p
    assert [t.zone for t in p.expire(now=1.0)] == ["checkout"]


def test_missed_reads_shorter_than_gone_after_do_not_flap() -> None:
    p = ZonePresence(3.0)
    appeared = 0
    gone = 0
    t = 0.0
    while t < 60:
        if int(t * 10) % 7 != 0:  # a read missed now and then
            appeared += p.observe("E1", "z", 1, -60, now=t) is not None
        gone += len(p.expire(now=t))
        t += 0.1
    assert (appeared, gone) == (1, 0)


def test_next_deadline_and_clear() -> None:
    p = ZonePresence(2.0)
    assert p.next_deadline() is None
    p.observe("A", "z", 1, None, now=1.0)
    p.observe("B", "z", 1, None, now=3.0)
    assert p.next_deadline() == 3.0
    assert sorted(t.epc for t in p.clear()) == ["A", "B"]
    assert len(p) == 0


def test_gone_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ZonePresence(0)
