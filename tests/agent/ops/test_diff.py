"""Key-path diffs of config views (pure)."""

from __future__ import annotations

from agent.ops.diff import Change, diff, masked_secrets, render_changes
from agent.ops.documents import config_view


def test_diff_names_each_change_by_its_key_path() -> None:
    old = {"rfid": {"gone_after_s": 3.0, "readers": [{"id": "a", "port": "/dev/ttyUSB0"}]}, "ble": {"source": "hci0"}}
    new = {"rfid": {"gone_after_s": 2.0, "readers": [{"id": "a", "port": "/dev/ttyUSB1"}, {"id": "b"}]}}
    changes, secrets = diff(old, new)
    assert secrets == 0
    assert changes == [
        Change("-", "ble", old={"source": "hci0"}),
        Change("~", "rfid.gone_after_s", 3.0, 2.0),
        Change("~", "rfid.readers[0].port", "/dev/ttyUSB0", "/dev/ttyUSB1"),
        Change("+", "rfid.readers[1]", new={"id": "b"}),
    ]
    assert render_changes(changes) == [
        '- ble: {"source": "hci0"}',
        "~ rfid.gone_after_s: 3.0 -> 2.0",
        '~ rfid.readers[0].port: "/dev/ttyUSB0" -> "/dev/ttyUSB1"',
        '+ rfid.readers[1]: {"id": "b"}',
    ]
    assert diff(new, new) == ([], 0)


def test_masked_secrets_are_counted_never_reported() -> None:
    old = {"checkout": {"stations": [{"id": "sco-1", "token": "***"}]}}
    new = {"checkout": {"stations": [{"id": "sco-1", "token": "**********"}]}}
    assert diff(old, new) == ([], 1)
    assert masked_secrets(old) == 1 and masked_secrets({"a": "*"}) == 0


def test_config_view_fills_defaults_and_leaves_out_what_a_push_does_not_carry() -> None:
    sparse = {"version": 7, "signature": "x", "store": {"id": "s1", "gateway": "g", "name": "n"},
              "mqtt": {"port": 1}, "rfid": {"gone_after_s": 2.0}}
    view = config_view(sparse)
    assert view["store"]["name"] == "n" and not {"id", "gateway"} & set(view["store"])
    assert "mqtt" not in view and "version" not in view
    assert view["rfid"]["gone_after_s"] == 2.0 and view["rfid"]["keep_raw_reads"] is False  # a default filled in
    assert diff(view, config_view({"rfid": {"gone_after_s": 2.0}, "store": {"name": "n"}})) == ([], 0)
    assert config_view({"rfid": {"nope": 1}}) == {"rfid": {"nope": 1}}  # what the schema refuses is compared raw
