"""Every subcommand fails with one sentence, and no traceback, when the broker is unreachable or refuses us."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.agent.ops.conftest import EXE, auth_broker
from tests.conftest import free_port


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "ops", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("command", [["fleet"], ["cmd", "ping", "--all"], ["fleet", "--watch"]])
def test_unreachable_broker_is_one_sentence(command: list[str]) -> None:
    port = free_port()
    r = ops(*command, "--port", str(port))
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr == (f"o2o-edge ops {command[0]}: cannot reach the MQTT broker at 127.0.0.1:{port} "
                        "(Connection refused): check --host and --port and that it runs\n")


def test_refused_credentials_are_one_sentence_and_never_show_the_password(tmp_path: Path) -> None:
    broker = auth_broker(tmp_path / "broker", {"ops": "right-password"})
    try:
        wrong = tmp_path / "wrong"
        wrong.write_text("s3cret-wrong\n")
        r = ops("fleet", "--port", str(broker.port), "--username", "ops", "--password-file", str(wrong))
        assert r.returncode == 3, r
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"o2o-edge ops fleet: the MQTT broker at 127.0.0.1:{broker.port} refused the connection (")
        assert r.stderr.endswith("): check --username and --password-file, or the client certificate\n")
        assert "s3cret" not in r.stderr + r.stdout
        right = tmp_path / "right"
        right.write_text("right-password\n")
        r = ops("fleet", "--port", str(broker.port), "--username", "ops", "--password-file", str(right))
        assert r.returncode == 0, r
        assert r.stdout.startswith("0 gateway(s) in 0 store(s)")
    finally:
        broker.stop()


def test_bad_tls_files_and_missing_password_file_are_one_sentence(tmp_path: Path) -> None:
    r = ops("fleet", "--tls-ca", str(tmp_path / "nope.pem"))
    assert r.returncode == 2 and r.stderr.startswith("o2o-edge ops fleet: cannot load the TLS files: ") and r.stderr.count("\n") == 1
    r = ops("fleet", "--username", "ops", "--password-file", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.startswith("o2o-edge ops fleet: cannot read the password file ")
    r = ops("fleet", "--cert", str(tmp_path / "c.pem"))
    assert r.returncode == 2 and "--cert and --key-file go together" in r.stderr
