"""Start-up as a new user meets it: one instance per storage directory, and every start-up failure one
sentence with its documented exit code (agent/startup.py, README "Exit codes"), through `o2o-edge run`."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agent.instance_lock import LOCK_FILE, holder
from agent.startup import EXIT_CANTCREAT, EXIT_CONFIG, EXIT_LOCKED, EXIT_UNAVAILABLE
from tests import conftest
from tests.agent.test_process import EXE, get_json, procs, start, wait_http  # noqa: F401 - procs is a fixture
from tests.conftest import free_port


def config(tmp_path: Path, http_port: int, **sections: object) -> Path:
    return conftest.write_config(tmp_path, http={"listen": f"127.0.0.1:{http_port}", "api_token": "t0ken"},
                                 **sections)


def run_once(path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "run", "--config", str(path)], capture_output=True, text=True, timeout=timeout)


def the_error(stderr: str) -> str:
    """The one line that says why it could not start (no traceback anywhere)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "cannot start:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_second_daemon_on_the_same_storage_exits_at_once_naming_the_first(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    port = free_port()
    path = config(tmp_path, port)
    first = start(path, procs)
    wait_http(port, first)
    assert holder(tmp_path) == first.pid
    t0 = time.monotonic()
    second = run_once(path)
    assert time.monotonic() - t0 < 5
    assert second.returncode == EXIT_LOCKED
    assert second.stderr.strip().count("\n") == 0, second.stderr  # one line, nothing else
    assert f"another o2o-edge (pid {first.pid}) is already running on {tmp_path}" in second.stderr
    # The first one did not notice.
    assert first.poll() is None and get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200

    # The lock goes with its holder, even on SIGKILL: the next start is not blocked by a stale file.
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert (tmp_path / LOCK_FILE).exists() and holder(tmp_path) is None
    again = start(path, procs)
    wait_http(port, again)
    again.send_signal(signal.SIGTERM)
    assert again.wait(10) == 0


def test_port_in_use_is_one_sentence_and_69(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_once(config(tmp_path, port))
    assert out.returncode == EXIT_UNAVAILABLE
    assert the_error(out.stderr).endswith(f"cannot start: cannot listen on 127.0.0.1:{port}: the address is in use "
                                          "(another program, or another o2o-edge, listens there)")


def test_an_address_this_machine_does_not_have_is_69(tmp_path: Path) -> None:
    path = conftest.write_config(tmp_path, http={"listen": "192.0.2.7:8080", "api_token": "t"})  # TEST-NET-1
    out = run_once(path)
    assert out.returncode == EXIT_UNAVAILABLE
    assert "cannot listen on 192.0.2.7:8080: no network interface of this machine has that address" in \
        the_error(out.stderr)


def test_unwritable_storage_is_73(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = conftest.write_config(tmp_path, http={"listen": f"127.0.0.1:{free_port()}"},
                                 storage={"path": str(tmp_path / "file" / "o.db")})
    out = run_once(path)
    assert out.returncode == EXIT_CANTCREAT
    assert f"cannot write the storage directory {tmp_path / 'file'}: it is a file, not a directory" in the_error(out.stderr)
    # A database file that is not one (a disk that lost it, a wrong path) is the same family.
    (tmp_path / "o2o.db").write_bytes(b"this is not SQLite" * 100)
    out = run_once(config(tmp_path, free_port()))
    assert out.returncode == EXIT_CANTCREAT
    assert "cannot open outbox" in the_error(out.stderr)


@pytest.mark.parametrize("which", ["http", "mqtt"])
def test_bad_tls_files_are_78(tmp_path: Path, which: str) -> None:
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    if which == "http":
        path = conftest.write_config(tmp_path, http={"listen": f"127.0.0.1:{free_port()}",
                                                     "tls_cert": str(tmp_path / "missing.crt"),
                                                     "tls_key": str(tmp_path / "missing.key")})
        expected = f"cannot use the TLS certificate {tmp_path / 'missing.crt'} and key {tmp_path / 'missing.key'} " \
                   "of [http]: No such file or directory"
    else:
        path = config(tmp_path, free_port(), mqtt={"tls": {"ca_file": str(tmp_path / "garbage.pem")}})
        expected = f"cannot use the [mqtt.tls] files ({tmp_path / 'garbage.pem'}):"
    out = run_once(path)
    assert out.returncode == EXIT_CONFIG
    assert expected in the_error(out.stderr)
