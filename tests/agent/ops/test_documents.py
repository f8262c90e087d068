"""Config files and data documents, validated locally (pure, files only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.ops.documents import load_config_document, read_document
from agent.ops.errors import DocumentError
from agent.ops.publish import KINDS, check_document


def test_a_toml_config_is_stripped_of_what_each_gateway_owns(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 9\nsignature = "old"\n[store]\nid = "x"\ngateway = "y"\nname = "Odéon"\n'
                    '[http]\nlisten = "0.0.0.0:80"\n[mqtt]\nport = 1\n[rfid]\ngone_after_s = 2.0\n')
    doc = load_config_document(path)
    assert doc.body == {"store": {"name": "Odéon"}, "rfid": {"gone_after_s": 2.0}}
    assert doc.min_version == 9
    assert doc.stripped == ["http", "mqtt", "store.id", "store.gateway"]
    assert doc.remove == []
    path.write_text('version = 2\nremove = ["ble"]\n[rfid]\ngone_after_s = 2.0\n')
    doc = load_config_document(path, ["rfid.readers[door]", "ble"])
    assert doc.remove == ["ble", "rfid.readers[door]"]
    assert doc.document(5) == {"rfid": {"gone_after_s": 2.0}, "version": 5, "remove": ["ble", "rfid.readers[door]"]}


def test_every_problem_comes_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": -1, "remove": ["rfid.readers[a b]"], "rfid": {"readers": [{"id": "a", "port": "x", "protocol": "nope"}],
                                                        "gone_afer_s": 1}, "checkout": {"gates": [{"id": "g",
                                                                                                   "zones": ["z"]}]}}))
    with pytest.raises(DocumentError) as exc:
        load_config_document(path)
    assert exc.value.problems == [
        "remove: 'rfid.readers[a b]' is not a key path such as rfid.readers[checkout-2] or ble",
        "version: must be a whole number >= 0",
        "rfid.readers[0].protocol: must be one of uhfreader18, mercury, r2000, em4100",
        "rfid.gone_afer_s: unknown key (check the spelling; see config/example.toml)",
    ]
    path.write_text(json.dumps({"rfid": {"readers": [{"id": "a", "port": "x", "protocol": "em4100"}]},
                                "checkout": {"gates": [{"id": "g", "zones": ["z"]}]}}))
    with pytest.raises(DocumentError, match=r"checkout.gates\[0\].zones\[0\]: no reader covers zone 'z'"):
        load_config_document(path)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("c.toml", "[rfid\n", "TOML syntax error"),
    ("c.json", "{", "not JSON"),
    ("c.json", "[]", "expected a JSON object"),
])
def test_unreadable_documents(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DocumentError, match=message):
        read_document(path)


def test_kinds_without_an_installed_model_get_their_top_level_keys_checked() -> None:
    collect = KINDS["collect"]
    with pytest.raises(DocumentError, match="orders"):
        check_document(collect, {"order": []}, "collect.json")
    kind = KINDS["qr"]
    how = check_document(kind, {"version": 1, "base_url": "https://x", "codes": []}, "qr.json")
    assert how.startswith(("validated with agent.o2o.", "agent.o2o.qr_codes.QrDoc or agent.o2o.qr.QrDoc is not installed"))
    if not how.startswith("validated"):
        with pytest.raises(DocumentError) as exc:
            check_document(kind, {"version": "1", "codes": {}, "extra": 1}, "qr.json")
        assert exc.value.problems == ["base_url: is required", "version: must be a JSON number",
                                      "codes: must be a JSON list", "extra: unknown key"]
