"""Config schema and `o2o-edge check-config`: every error path reports its key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import format_loc, load_config, parse_config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = '[store]\nid = "s1"\ngateway = "gw-1"\n'


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("name", ["demo.toml", "example.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(ROOT / "config" / name)
    assert config.store.id
    assert config.rfid.readers, "the shipped configs show at least one reader"


def test_minimal_config_gets_design_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.http.listen == "127.0.0.1:8080"
    assert config.mqtt.port == 1883
    assert config.outbox.max_bytes == 536870912
    assert config.rfid.gone_after_s == 3.0
    assert str(config.storage.path) == "/var/lib/o2o-edge/o2o-edge.db"


def test_relative_storage_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "c.toml"
    path.write_text(MINIMAL + '[storage]\npath = "../var/x.db"\n')
    assert load_config(path).storage.path == (tmp_path / "var" / "x.db").resolve()


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[store]\nid = "s1"\n', "store.gateway: is required"),
        ("", "store: is required"),
        ('[store]\nid = "has space"\ngateway = "g"\n', "store.id: must be 1 to 64 letters"),
        (MINIMAL + "[http]\nlisten = 'localhost'\n", "http.listen: expected HOST:PORT"),
        (MINIMAL + "[http]\nlisten = '127.0.0.1:99999'\n", "http.listen: port 99999 out of range"),
        (MINIMAL + "[mqtt]\nport = 'x'\n", "mqtt.port: input should be a valid integer"),
        (MINIMAL + "[mqtt]\nport = 0\n", "mqtt.port: input should be greater than or equal to 1"),
        (MINIMAL + "[outbox]\nmax_bytes = 10\n", "outbox.max_bytes: input should be greater than or equal to 1048576"),
        (MINIMAL + "[rfid]\ngone_after_s = -1\n", "rfid.gone_after_s: input should be greater than 0"),
        (MINIMAL + "[storage]\nsynchronous = 'off'\n", "storage.synchronous: must be one of full, normal"),
        (MINIMAL + "[stroage]\n", "stroage: unknown key"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nport='/dev/x'\nprotocol='nfc'\n",
         "rfid.readers[0].protocol: must be one of uhfreader18, mercury, r2000, em4100"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nport='/dev/x'\nprotocol='mercury'\nbaudrate=1200\n",
         "rfid.readers[0].baudrate: must be one of 9600, 19200, 38400, 57600, 115200"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nprotocol='mercury'\n", "rfid.readers[0].port: is required"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nport='/dev/x'\nprotocol='mercury'\nzones={0='a'}\n",
         "rfid.readers[0].zones: antenna numbers run from 1 to 64"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nport='/dev/x'\nprotocol='mercury'\nzones={x='a'}\n",
         "rfid.readers[0].zones[x]"),
        (MINIMAL + "[[rfid.readers]]\nid='r'\nport='/dev/x'\nprotocol='mercury'\nmode='push'\n",
         "rfid.readers[0].mode: must be one of auto, active, polled"),
        (MINIMAL + "[[checkout.stations]]\nid='s'\nzones=[]\ntoken='t'\n", "checkout.stations[0].zones: list should have at least 1 item"),
        (MINIMAL + "[[checkout.stations]]\nid='s'\nzones=['z']\n", "checkout.stations[0].token: is required"),
        (MINIMAL + "[ble]\n[[ble.beacons]]\nid='b'\n", "ble.beacons[0]: give exactly one of ibeacon or eddystone_uid"),
        (MINIMAL + "[ble]\n[[ble.beacons]]\nid='b'\nibeacon={uuid='nope', major=1, minor=2}\n",
         "ble.beacons[0].ibeacon.uuid"),
        (MINIMAL + "[ble]\n[[ble.beacons]]\nid='b'\nibeacon={uuid='f7826da6-4fa2-4e98-8024-bc5b71e0893e', major=70000, minor=2}\n",
         "ble.beacons[0].ibeacon.major: input should be less than or equal to 65535"),
        (MINIMAL + "[wifi.portal]\nfas_secure_level = 7\n", "wifi.portal.fas_secure_level: must be one of 0, 1, 2, 3"),
        (MINIMAL + "[wifi.portal]\nfas_secure_level = 3\n", "wifi.portal.faskey: fas_secure_level 3 encrypts the query"),
        (MINIMAL + "[wifi.portal]\nfas_secure_level = 0\nlisten = 'nope'\n", "wifi.portal.listen: "),
        (MINIMAL + "[wifi.portal]\nfas_secure_level = 2\nfaskey = ''\n", "wifi.portal.faskey: fas_secure_level 2"),
        (MINIMAL + "[logging]\nlevel = 'loud'\n", "logging.level: must be one of debug, info, warning, error"),
    ],
)
def test_each_schema_error_names_its_key_path(tmp_path: Path, snippet: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(snippet, tmp_path)), problems_of(snippet, tmp_path)


@pytest.mark.parametrize("portal", ["fas_secure_level = 1\nfaskey = \"\"\n", "fas_secure_level = 4\n",
                                    "fas_secure_level = 0\n", "fas_secure_level = 3\nfaskey = \"k\"\n"])
def test_the_faskey_is_needed_only_to_decrypt(tmp_path: Path, portal: str) -> None:
    """DESIGN.md's `faskey = ""` (openNDS's default) at level 1: levels 1 and 4 find the guest without it."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + "[wifi.portal]\n" + portal)
    config = load_config(path)
    assert config.wifi.portal is not None and f"= {config.wifi.portal.fas_secure_level}\n" in portal


def test_cross_section_errors_have_precise_paths(tmp_path: Path) -> None:
    text = MINIMAL + """
[[rfid.readers]]
id = "r1"
port = "/dev/a"
protocol = "uhfreader18"
zones = { 1 = "checkout-1" }
[[rfid.readers]]
id = "r1"
port = "/dev/b"
protocol = "em4100"
baudrate = 9600
[[checkout.stations]]
id = "sco-1"
zones = ["checkout-1", "nowhere"]
token = "t"
[[checkout.gates]]
id = "exit-1"
zones = ["exit"]
"""
    problems = problems_of(text, tmp_path)
    assert "rfid.readers[1].id: duplicate id 'r1' (also rfid.readers[0])" in problems
    assert any(p.startswith("checkout.stations[0].zones[1]: no reader covers zone 'nowhere'") for p in problems)
    assert any(p.startswith("checkout.gates[0].zones[0]: no reader covers zone 'exit'") for p in problems)
    assert len(problems) == 3


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    problems = problems_of(
        '[store]\nid="a b"\n[mqtt]\nport=-1\n[[rfid.readers]]\nid="r"\nport="/dev/x"\nprotocol="x"\nbaudrate=1\n',
        tmp_path,
    )
    paths = {p.split(":")[0] for p in problems}
    assert {"store.id", "store.gateway", "mqtt.port", "rfid.readers[0].protocol", "rfid.readers[0].baudrate"} <= paths


def test_toml_syntax_error_and_unreadable_file(tmp_path: Path) -> None:
    assert problems_of("[store\nid=1", tmp_path)[0].startswith("TOML syntax error")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.toml")


def test_push_documents_use_the_same_schema() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"version": "seven", "store": {"id": "s", "gateway": "g"}}, "mqtt config/set")
    assert [str(p) for p in info.value.problems] == ["version: input should be a valid integer"]


def test_format_loc() -> None:
    assert format_loc(("rfid", "readers", 1, "baudrate")) == "rfid.readers[1].baudrate"
    assert format_loc(("rfid", "readers", 0, "zones", "3")) == "rfid.readers[0].zones[3]"
    assert format_loc(()) == ""


def test_unmapped_antenna_gets_a_zone_of_its_own() -> None:
    config = parse_config({"store": {"id": "s", "gateway": "g"}, "rfid": {"readers": [
        {"id": "r", "port": "/dev/x", "protocol": "mercury", "zones": {1: "a"}},
        {"id": "q", "port": "/dev/y", "protocol": "mercury"},
    ]}})
    r, q = config.rfid.readers
    assert r.zone_for(1) == "a"
    assert r.zone_for(4) == "r/ant4"
    assert q.zone_for(2) == "q"


def test_check_config_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    assert main(["check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[mqtt]\nport = 70000\n")
    assert main(["check-config", str(bad)]) == 78  # EX_CONFIG, as `run` exits for the same file
    err = capsys.readouterr().err
    assert "1 problem(s)" in err
    assert "mqtt.port: input should be less than or equal to 65535" in err


def test_check_config_console_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\n")
    exe = Path(sys.executable).with_name("o2o-edge")
    out = subprocess.run([str(exe), "check-config", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 78
    assert "store.id: is required" in out.stderr
    assert "store.gateway: is required" in out.stderr
