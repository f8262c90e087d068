"""`o2o-edge check-config`: errors exit 78 (as `run` does), warnings leave it 0; numbers are strict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.check_config import warnings
from agent.config import parse_config
from agent.errors import ConfigError
from tests.conftest import make_config

EXE = str(Path(sys.executable).with_name("o2o-edge"))
MINIMAL = '[store]\nid = "s1"\ngateway = "gw-1"\n'


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "o2o.toml"
    path.write_text(text)
    return subprocess.run([EXE, "check-config", str(path)], capture_output=True, text=True, timeout=60)


def test_an_invalid_file_exits_78_with_every_problem(tmp_path: Path) -> None:
    assert check(tmp_path, "[store\n").returncode == 78  # TOML syntax too
    out = check(tmp_path, MINIMAL + '[outbox]\nmax_bytes = true\n[rfid]\ngone_after_s = "3"\n'
                                    '[[rfid.readers]]\nid = "r"\nport = "/dev/null"\nprotocol = "mercury"\n'
                                    'baudrate = "115200"\n')
    assert out.returncode == 78
    assert out.stderr.splitlines()[1:] == [
        "  outbox.max_bytes: expected a number, not true",
        "  rfid.gone_after_s: expected a number, not the string '3' (write numbers without quotes)",
        "  rfid.readers[0].baudrate: expected a number, not the string '115200' (write numbers without quotes)",
    ]


def test_warnings_do_not_fail_the_check(tmp_path: Path) -> None:
    out = check(tmp_path, MINIMAL + f"""
[http]
listen = "127.0.0.1:8080"
api_token = "change-me"
[mqtt]
password = "Change-Me-Please"
[[rfid.readers]]
id = "r"
port = "{tmp_path / 'ttyUSB9'}"
protocol = "mercury"
baudrate = 115200
zones = {{ 1 = "exit" }}
[[rfid.readers]]
id = "net"
port = "socket://10.0.0.9:4001"
protocol = "mercury"
baudrate = 115200
[[checkout.gates]]
id = "exit-1"
zones = ["exit"]
alarm = [{{ type = "serial", port = "{tmp_path / 'ttyRELAY'}" }}]
""")
    assert out.returncode == 0, out
    assert out.stdout.startswith(f"{tmp_path / 'o2o.toml'}: ok (store s1, gateway gw-1, 2 reader(s)")
    lines = out.stderr.splitlines()
    assert lines[0].endswith(": 5 warning(s)")
    text = "\n".join(lines)
    assert "warning: http.api_token: still the example's placeholder" in text
    assert "warning: mqtt.password: still the example's placeholder" in text
    assert "change-me" not in text.lower().replace("the example's placeholder", "")  # no secret is printed
    assert f"warning: rfid.readers[0].port: {tmp_path / 'ttyUSB9'} does not exist on this machine" in text
    assert "rfid.readers[1]" not in text  # a pyserial URL is not a file
    assert f"warning: checkout.gates[0].alarm[0].port: {tmp_path / 'ttyRELAY'} does not exist" in text
    assert "warning: http.listen: 127.0.0.1 is reachable from this gateway only" in text


def test_listen_addresses(tmp_path: Path) -> None:
    def listen_warnings(listen: str) -> list[str]:
        return [str(w) for w in warnings(make_config(tmp_path, http={"listen": listen}))]

    assert listen_warnings("0.0.0.0:8080") == []
    assert listen_warnings("gateway.local:8080") == []  # a name is resolved at start
    assert listen_warnings("[::1]:8080")[0].startswith("http.listen: ::1 is reachable from this gateway only")
    assert listen_warnings("192.0.2.7:8080") == [
        "http.listen: no network interface of this machine has 192.0.2.7: the daemon would not start here"]


def test_pushes_keep_their_json_numbers() -> None:
    """Strict numbers take what JSON gives: ints where ints go, ints or floats where floats go."""
    doc = json.loads('{"version": 3, "store": {"id": "s", "gateway": "g"}, "rfid": {"gone_after_s": 2, '
                     '"readers": [{"id": "r", "port": "/dev/x", "protocol": "mercury", "baudrate": 115200, '
                     '"zones": {"1": "a"}, "poll_interval_s": 0.5}]}, "outbox": {"max_bytes": 2097152}}')
    config = parse_config(doc, "config/set")
    assert config.rfid.gone_after_s == 2.0 and config.rfid.readers[0].zones == {1: "a"}
    with pytest.raises(ConfigError, match=r"version: expected a number, not the string '4'"):
        parse_config({**doc, "version": "4"}, "config/set")
    with pytest.raises(ConfigError, match=r"rfid.readers\[0\].baudrate: input should be a valid integer"):
        parse_config({**doc, "rfid": {"readers": [{**doc["rfid"]["readers"][0], "baudrate": 115200.5}]}})


def test_tls_files_that_cannot_be_used_are_named_before_run_refuses_them(tmp_path: Path) -> None:
    """check-config said ok, then `run` exited 78 on the example's CA file that was not there."""
    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    out = check(tmp_path, MINIMAL + f"""
[http]
tls_cert = "{tmp_path / 'not-a-cert.pem'}"
tls_key = "{tmp_path / 'not-a-cert.pem'}"
[mqtt.tls]
ca_file = "{tmp_path / 'missing-ca.pem'}"
""")
    assert out.returncode == 0, out
    text = out.stderr
    assert f"warning: mqtt.tls: cannot use the [mqtt.tls] files ({tmp_path / 'missing-ca.pem'}): No such file" in text
    assert "(run would exit 78)" in text
    assert f"warning: http.tls_cert: cannot use the TLS certificate {tmp_path / 'not-a-cert.pem'}" in text
