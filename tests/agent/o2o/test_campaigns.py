"""Campaign documents, schedules in the store's time zone (across DST) and the stable A/B assignment, pure."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.documents import DocumentError, parse_document
from agent.o2o.campaigns import Campaign, CampaignsDoc, assign, by_priority, stable_unit
from agent.o2o.members import MembersDoc

PARIS = ZoneInfo("Europe/Paris")


def campaign(**over: Any) -> dict[str, Any]:
    return {"id": "shoes-10", "trigger": {"on": "dwell", "zones": ["shoes"], "dwell_s": 30},
            "offer": {"title": "-10% on running shoes", "code": "RUN10"}, **over}


def doc(*campaigns: dict[str, Any], version: int = 1) -> bytes:
    return json.dumps({"version": version, "campaigns": list(campaigns)}).encode()


@pytest.mark.parametrize(("bad", "path", "message"), [
    ({"trigger": {"on": "shout", "zones": ["shoes"]}}, "campaigns[0].trigger.on", "'enter', 'dwell' or"),
    ({"holdout": 1.5}, "campaigns[0].holdout", "less than or equal to 1"),
    ({"holdout": -0.1}, "campaigns[0].holdout", "greater than or equal to 0"),
    ({"variants": [{"id": "a", "share": 0.5, "offer": {"title": "A"}}, {"id": "b", "share": 0.4, "offer": {"title": "B"}}]},
     "campaigns[0]", "add up to 0.9"),
    ({"trigger": {"on": "dwell", "zones": ["shoes"]}}, "campaigns[0].trigger", "needs dwell_s"),
    ({"trigger": {"on": "enter", "zones": []}}, "campaigns[0].trigger", "needs zones"),
    ({"schedule": {"from": "09:00"}}, "campaigns[0].schedule", "go together"),
    ({"schedule": {"days": ["mon", "funday"]}}, "campaigns[0].schedule.days[1]", ""),
    ({"products": ["12345"]}, "campaigns[0].products", "8, 12, 13 or 14 digits"),
    ({"offer": {"title": "x", "url": "javascript:alert(1)"}}, "campaigns[0].offer.url", "pattern"),
])
def test_bad_campaigns_are_refused_with_their_key_path(bad: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_document(CampaignsDoc, doc(campaign(**bad)), max_bytes=1 << 20)
    assert any(e["path"] == path and message in e["message"] for e in info.value.errors), info.value.errors


@pytest.mark.parametrize("on", ["enter", "wifi.session.start"])
def test_design_examples_trigger_shape_is_accepted_for_every_trigger(on: str) -> None:
    """DESIGN.md's campaigns/set example sends zones and dwell_s whatever `on` is: a contract's example is valid."""
    parsed = parse_document(CampaignsDoc, doc(campaign(trigger={"on": on, "zones": ["shoes"], "dwell_s": 30})),
                            max_bytes=1 << 20)
    assert parsed.campaigns[0].trigger.on == on


def test_duplicates_and_size_are_refused() -> None:
    with pytest.raises(DocumentError, match="id 'shoes-10' also at campaigns"):
        parse_document(CampaignsDoc, doc(campaign(), campaign()), max_bytes=1 << 20)
    big = doc(*[campaign(id=f"c{i}", offer={"title": "x" * 100, "text": "y" * 900}) for i in range(5000)])
    assert len(big) > 5_000_000
    with pytest.raises(DocumentError, match="payload too large"):
        parse_document(CampaignsDoc, big, max_bytes=5_000_000)


def test_members_with_malformed_phones_are_refused() -> None:
    members = {"version": 1, "members": [
        {"member": "L1", "ibeacon": {"uuid": "not-a-uuid", "major": 1, "minor": 2}},
        {"member": "L2", "ibeacon": {"uuid": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d", "major": 70000, "minor": 2}},
        {"member": "L 3"}]}
    with pytest.raises(DocumentError) as info:
        parse_document(MembersDoc, json.dumps(members).encode(), max_bytes=1 << 20)
    paths = {e["path"] for e in info.value.errors}
    assert {"members[0].ibeacon.uuid", "members[1].ibeacon.major", "members[2].member"} <= paths


def test_members_beyond_the_bounds_are_refused_whole() -> None:
    from agent.o2o.members import MAX_MEMBERS, MAX_MEMBERS_BYTES

    one = {"member": "L0", "consents": {"personalisation": True}}
    many = {"version": 1, "members": [{**one, "member": f"L{i}"} for i in range(MAX_MEMBERS + 1)]}
    with pytest.raises(DocumentError) as info:
        parse_document(MembersDoc, json.dumps(many).encode(), max_bytes=MAX_MEMBERS_BYTES)
    assert [e["path"] for e in info.value.errors] == ["members"]
    assert "50000" in info.value.errors[0]["message"]
    many["members"] = many["members"][:MAX_MEMBERS]  # exactly the bound is fine
    assert len(parse_document(MembersDoc, json.dumps(many).encode(), max_bytes=MAX_MEMBERS_BYTES).members) == MAX_MEMBERS
    with pytest.raises(DocumentError, match="payload too large"):
        parse_document(MembersDoc, b'{"version": 1, "members": []' + b" " * MAX_MEMBERS_BYTES + b"}",
                       max_bytes=MAX_MEMBERS_BYTES)


def test_schedule_in_the_store_time_zone_across_dst() -> None:
    c = Campaign.model_validate(campaign(schedule={"start": "2026-03-27", "end": "2026-03-30", "days": ["sun"],
                                                   "from": "01:00", "to": "04:00"}))
    # 2026-03-29 is the night France moves from 02:00 CET to 03:00 CEST: 01:30 and 03:30 exist, 02:30 does not.
    before = datetime(2026, 3, 29, 0, 31, tzinfo=ZoneInfo("UTC")).astimezone(PARIS)  # 01:31 CET
    after = datetime(2026, 3, 29, 1, 31, tzinfo=ZoneInfo("UTC")).astimezone(PARIS)  # 03:31 CEST, an hour later
    late = datetime(2026, 3, 29, 2, 1, tzinfo=ZoneInfo("UTC")).astimezone(PARIS)  # 04:01 CEST
    assert (before.hour, after.hour) == (1, 3)
    assert c.schedule.active(before) and c.schedule.active(after) and not c.schedule.active(late)
    assert not c.schedule.active(datetime(2026, 3, 28, 2, 0, tzinfo=PARIS))  # a saturday
    assert not c.schedule.active(datetime(2026, 4, 5, 2, 0, tzinfo=PARIS))  # after the end date


def test_a_window_past_midnight_belongs_to_the_day_it_started() -> None:
    c = Campaign.model_validate(campaign(schedule={"days": ["fri"], "from": "22:00", "to": "02:00"}))
    assert c.schedule.active(datetime(2026, 12, 4, 23, 0, tzinfo=PARIS))  # friday night
    assert c.schedule.active(datetime(2026, 12, 5, 1, 0, tzinfo=PARIS))  # saturday 01:00, friday's window
    assert not c.schedule.active(datetime(2026, 12, 6, 1, 0, tzinfo=PARIS))  # sunday 01:00


def test_assignment_is_the_documented_hash() -> None:
    c = Campaign.model_validate(campaign(holdout=0.25, variants=[
        {"id": "a", "share": 0.5, "offer": {"title": "A"}}, {"id": "b", "share": 0.5, "offer": {"title": "B"}}]))

    def h(s: str) -> float:  # the formula from agent/o2o/campaigns.py's docstring, written again here
        return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big") / 2**64

    results = [assign(c, f"L{i:05d}") for i in range(4000)]
    for i, (variant, held) in enumerate(results[:200]):
        m = f"L{i:05d}"
        assert held == (h(f"shoes-10|{m}|holdout") < 0.25)
        assert variant == ("a" if h(f"shoes-10|{m}|variant") < 0.5 else "b")
    assert assign(c, "L00007") == results[7]  # stable
    held = sum(1 for _, h_ in results if h_) / len(results)
    a = sum(1 for v, _ in results if v == "a") / len(results)
    assert 0.22 < held < 0.28 and 0.47 < a < 0.53
    everyone = Campaign.model_validate(campaign(holdout=1.0))
    assert all(assign(everyone, f"L{i}")[1] for i in range(100))
    assert 0 <= stable_unit("x") < 1


def test_priority_then_id() -> None:
    cs = [Campaign.model_validate(campaign(id=i, priority=p)) for i, p in (("b", 5), ("a", 5), ("c", 9))]
    assert [c.id for c in by_priority(cs)] == ["c", "a", "b"]
