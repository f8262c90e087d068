"""The root helper (drivers/wifi/ndsctl_helper.py) run as a process against fake_ndsctl.py, a stand-in faithful to
openNDS's ndsctl: good requests run ndsctl with exactly their arguments; hostile ones are refused and nothing runs
(the fake's `calls` log proves it). Then NdsCtl("unix:SOCKET") through a real socket that starts the helper per
connection, as systemd's Accept=yes does: the same results and NdsCtlError codes as running ndsctl itself."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.wifi import ndsctl_helper
from drivers.wifi.ndsctl import (
    EXIT_BUSY,
    EXIT_NO,
    EXIT_NO_DAEMON,
    MAX_OUTPUT,
    MAX_REQUEST,
    NdsCtl,
    NdsCtlError,
    check_args,
    request_line,
)
from tests.drivers.wifi import fake_ndsctl
from tests.drivers.wifi.helper_socket import HELPER, HelperSocket, fake_ndsctl_binary

FASKEY = "c775e7b757ede630cd0aa1113bd102661ab38829ca52a6422ab782862f268646"
MAC, IP, TOKEN = "aa:bb:cc:dd:ee:ff", "192.168.8.123", "1a2b3c4d"
RHID = hashlib.sha256((hashlib.sha256(TOKEN.encode()).hexdigest() + FASKEY).encode()).hexdigest()
CUSTOM = base64.b64encode(b"consent=01J").decode()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "opennds.json"
    fake_ndsctl.write_state(path, faskey=FASKEY)
    fake_ndsctl.add_client(path, IP, MAC, token=TOKEN)
    return path


@pytest.fixture
def fake(tmp_path: Path, state: Path) -> Path:
    return fake_ndsctl_binary(tmp_path, state)


def calls(state: Path) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = fake_ndsctl.read_state(state)["calls"]
    return result


def helper(request: bytes, ndsctl: Path, *options: str) -> tuple[dict[str, Any], int, str]:
    """Run the helper as a process, the request on its stdin: (its answer, its exit code, its log)."""
    out = subprocess.run([*HELPER, "--ndsctl", str(ndsctl), *options], input=request, capture_output=True,
                         timeout=60, check=False)
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1 and out.stdout.endswith(b"\n"), out
    answer: dict[str, Any] = json.loads(lines[0])
    assert set(answer) == {"exit", "out", "err"}
    return answer, out.returncode, out.stderr.decode()


# -- the helper program -------------------------------------------------------------------------------

def test_json_runs_ndsctl_and_answers_its_output(state: Path, fake: Path) -> None:
    answer, code, log = helper(f"json {MAC}\n".encode(), fake)
    assert code == 0 and answer["exit"] == 0 and answer["err"] == ""
    assert json.loads(answer["out"])["token"] == TOKEN and answer["out"].endswith("}\n")  # ndsctl's text, as is
    assert calls(state) == [{"argv": ["json", MAC], "exit": 0}]
    assert log == "ndsctl-helper: json <MAC>: exit 0 in " + log.split(" in ")[1] and MAC not in log


def test_auth_and_deauth_with_exactly_their_arguments(state: Path, fake: Path) -> None:
    answer, code, log = helper(f"auth {RHID} 60 0 2000 0 0 {CUSTOM}\n".encode(), fake)
    assert (code, answer["exit"]) == (0, 0) and answer["out"] == f"Client {RHID},60,0,2000,0,0,{CUSTOM} authenticated.\n"
    assert "auth <rhid> 60 0 2000 0 0 <custom, 16 chars>: exit 0" in log and RHID not in log and CUSTOM not in log
    answer, _, _ = helper(f"auth {MAC} 60 0 0 0 0\n".encode(), fake)  # no longer Preauthenticated
    assert answer["exit"] == EXIT_NO and answer["out"].startswith("Failed to authenticate client")
    answer, _, _ = helper(f"deauth {IP}\n".encode(), fake)
    assert answer == {"exit": 0, "out": f"Client {IP} deauthenticated.\n", "err": ""}
    assert [c["argv"] for c in calls(state)] == [["auth", RHID, "60", "0", "2000", "0", "0", CUSTOM],
                                                 ["auth", MAC, "60", "0", "0", "0", "0"], ["deauth", IP]]


def test_ndsctl_exit_codes_pass_through(state: Path, fake: Path) -> None:
    fake_ndsctl.update_state(state, running=False)
    answer, code, _ = helper(f"json {TOKEN}\n".encode(), fake)
    assert code == 0 and answer["exit"] == EXIT_NO_DAEMON and "opennds probably not yet started" in answer["err"]
    fake_ndsctl.update_state(state, running=True, busy=1)
    answer, _, _ = helper(f"json {TOKEN}\n".encode(), fake)
    assert answer == {"exit": EXIT_BUSY, "out": "ndsctl thread is busy, please try later.\n", "err": ""}


HOSTILE = [
    # shell metacharacters: never a shell, and never a valid argument either
    b"json $(reboot)\n", b"json `id`\n", b"json aa:bb:cc:dd:ee:ff;reboot\n", b"json aa:bb:cc:dd:ee:ff|id\n",
    b"json aa:bb:cc:dd:ee:ff; reboot\n", b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 $(id)\n",
    b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 a&&b\n", b"json ../../etc/passwd\n", b"json *\n",
    # overlong
    b"json " + b"a" * 600 + b"\n", b"j" * 100_000, b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 " + b"QUFB" * 40 + b"\n",
    # unknown commands, ndsctl's own included, and its -s option
    b"stop\n", b"status\n", b"trust aa:bb:cc:dd:ee:ff\n", b"debuglevel 7\n", b"b64decode YQ==\n",
    b"-s /tmp/x.sock json aa:bb:cc:dd:ee:ff\n", b"JSON aa:bb:cc:dd:ee:ff\n", b"\n", b"",
    # NUL bytes, control characters, non-ASCII, spacing
    b"json aa:bb:cc:dd:ee:ff\0\n", b"json\0aa:bb:cc:dd:ee:ff\n", b"json aa:bb:cc:dd:ee:ff\r\n",
    b"json\taa:bb:cc:dd:ee:ff\n", b"json  aa:bb:cc:dd:ee:ff\n", b" json aa:bb:cc:dd:ee:ff\n",
    b"json aa:bb:cc:dd:ee:ff \n", "json aa:bb:cc:dd:ee:ﬀ\n".encode(), b"auth aa:bb:cc:dd:ee:ff \xd9\xa6 0 0 0 0\n",
    # extra, missing or malformed arguments
    b"json aa:bb:cc:dd:ee:ff 1a2b3c4d\n", b"deauth aa:bb:cc:dd:ee:ff extra\n", b"json\n",
    b"auth aa:bb:cc:dd:ee:ff 60\n", b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 YQ== extra\n",
    b"auth aa:bb:cc:dd:ee:ff -1 0 0 0 0\n", b"auth aa:bb:cc:dd:ee:ff 0x10 0 0 0 0\n",
    b"auth aa:bb:cc:dd:ee:ff 01 0 0 0 0\n", b"auth aa:bb:cc:dd:ee:ff 99999999999 0 0 0 0\n",
    b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 a,b\n", b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 YQ=\n",
    b"auth aa:bb:cc:dd:ee:ff,60 0 0 0 0 0\n", b"json aa,bb,cc,dd\n",
    # keys that are no client, or short enough that ndsctl json would list every client
    b"json 1.2.3\n", b"json ::1\n", b"json 1a2b3c4\n", b"json 1A2B3C4D\n", b"json " + b"a" * 65 + b"\n",
    b"json 999.1.1.1\n", b"json aa:bb:cc:dd:ee\n",
    # one request a connection
    b"json aa:bb:cc:dd:ee:ff\njson aa:bb:cc:dd:ee:ff\n", b"json aa:bb:cc:dd:ee:ff\nstop\n",
    # no end of line
    b"json aa:bb:cc:dd:ee:ff",
]


@pytest.mark.parametrize("request_bytes", HOSTILE, ids=lambda r: repr(r[:40]))
def test_hostile_requests_are_refused_and_nothing_runs(state: Path, fake: Path, request_bytes: bytes) -> None:
    answer, code, log = helper(request_bytes, fake)
    assert code == ndsctl_helper.EXIT_REFUSED and answer["exit"] is None and answer["out"] == ""
    assert answer["err"].startswith("refused: ") and len(answer["err"]) < 200
    assert log.startswith("ndsctl-helper: refused: ") and log.endswith("; nothing run\n") and log.count("\n") == 1
    assert calls(state) == []


def test_refusals_say_why() -> None:
    def why(line: bytes) -> str:
        with pytest.raises(ndsctl_helper.Refused) as err:
            ndsctl_helper.parse_request(line)
        return str(err.value)

    assert why(b"stop") == "unknown command 'stop' (only json, auth, deauth)"
    assert why(b"json $(id)") == "not a MAC, IP, token or rhid: '$(id)'"
    assert why(b"json a b") == "json takes one KEY (a MAC, IP, token or rhid), not 2 arguments"
    assert why(b"json \0") == "a NUL byte in the request"
    assert why(b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 x") == "auth download_quota_kb is not a number from 0 to 2147483647: 'x'"
    assert why(b"auth aa:bb:cc:dd:ee:ff 60 0 0 0 0 !") == "auth CUSTOM is not base64"
    assert why(b"json  aa:bb:cc:dd:ee:ff").startswith("empty words")


def test_a_silent_client_is_let_go(state: Path, fake: Path) -> None:
    ours, theirs = socket.socketpair()  # the connection, as systemd hands it over: stdin and stdout
    with ours, theirs:
        proc = subprocess.Popen([*HELPER, "--ndsctl", str(fake), "--request-timeout", "0.5"], stdin=theirs,
                                stdout=theirs, stderr=subprocess.DEVNULL)
        assert proc.wait(30) == ndsctl_helper.EXIT_REFUSED  # while we keep the connection open, saying nothing
        ours.settimeout(5)
        assert ours.recv(4096) == b'{"exit": null, "out": "", "err": "refused: no request line within 0.5s"}\n'
    assert calls(state) == []


def test_ndsctl_that_hangs_is_killed(state: Path, fake: Path) -> None:
    fake_ndsctl.update_state(state, sleep_s=30)
    answer, code, log = helper(f"json {MAC}\n".encode(), fake, "--timeout", "0.5")
    assert code == ndsctl_helper.EXIT_FAILED and answer["exit"] is None
    assert answer["err"].endswith("json did not answer within 0.5s") and "did not answer" in log


def test_a_hung_ndsctl_is_killed_with_what_it_started(tmp_path: Path) -> None:
    """ndsctl runs libopennds.sh, which runs df and awk: killing ndsctl alone would leave them holding its pipes."""
    hung = tmp_path / "hung"
    hung.write_text("#!/bin/sh\nsleep 60 | cat\n")
    hung.chmod(0o755)
    t0 = time.monotonic()
    answer, code, _ = helper(f"json {MAC}\n".encode(), hung, "--timeout", "0.5")
    assert code == ndsctl_helper.EXIT_FAILED and answer["err"].endswith("did not answer within 0.5s")
    assert time.monotonic() - t0 < 10


def test_output_is_bounded(tmp_path: Path) -> None:
    loud = tmp_path / "loud"
    loud.write_text("#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\n")
    loud.chmod(0o755)
    answer, code, _ = helper(f"json {MAC}\n".encode(), loud)
    assert code == ndsctl_helper.EXIT_FAILED and answer["exit"] is None
    assert answer["err"].endswith(f"printed more than {MAX_OUTPUT} bytes")


def test_missing_ndsctl(tmp_path: Path) -> None:
    answer, code, _ = helper(f"json {MAC}\n".encode(), tmp_path / "nosuch")
    assert code == ndsctl_helper.EXIT_FAILED and answer["exit"] is None and answer["err"].startswith("cannot run")


def test_ndsctl_runs_with_a_clean_environment(tmp_path: Path) -> None:
    env_printer = tmp_path / "env"
    env_printer.write_text(f"#!{sys.executable} -I\nimport json, os, sys\nprint(json.dumps(dict(os.environ)), sys.argv[1:])\n")
    env_printer.chmod(0o755)
    out = subprocess.run([*HELPER, "--ndsctl", str(env_printer)], input=f"deauth {MAC}\n".encode(),
                         capture_output=True, timeout=60, env={"SECRET": "x", "LD_PRELOAD": "/tmp/evil.so",
                                                              "PATH": "/tmp/evil:/usr/bin"}, check=False)
    printed = json.loads(out.stdout)["out"]
    env = json.loads(printed.split(" [")[0])
    assert set(env) - {"LC_CTYPE"} == {"PATH", "LC_ALL"} and env["PATH"] == ndsctl_helper.ENV["PATH"]
    assert printed.endswith(f"['deauth', '{MAC}']\n")


def test_the_subcommand_runs_the_same_helper(state: Path, fake: Path) -> None:
    o2o_edge = Path(sys.executable).parent / "o2o-edge"
    out = subprocess.run([str(o2o_edge), "ndsctl-helper", "--ndsctl", str(fake)], input=f"json {IP}\n".encode(),
                         capture_output=True, timeout=60, check=False)
    assert out.returncode == 0 and json.loads(out.stdout)["exit"] == 0
    assert calls(state) == [{"argv": ["json", IP], "exit": 0}]


def test_client_and_helper_check_alike() -> None:
    """What the client sends is what the helper accepts; what the client refuses, the helper refuses too."""
    good = [("json", MAC), ("json", IP), ("json", "fe80::1:2"), ("json", TOKEN), ("json", RHID), ("deauth", MAC),
            ("auth", RHID, "0", "0", "0", "0", "0"), ("auth", TOKEN, str(2**31 // 60 - 1), "1", "2", "3", "4", CUSTOM)]
    for args in good:
        line = request_line(args)
        assert len(line) <= MAX_REQUEST and ndsctl_helper.parse_request(line.rstrip(b"\n")) == args
    for args in [("stop",), ("json", "1.2.3"), ("auth", MAC, "60"), ("auth", MAC, "1", "0", "0", "0", "0", "a,b")]:
        with pytest.raises(ValueError):
            check_args(args)
        with pytest.raises(ndsctl_helper.Refused):
            ndsctl_helper.parse_request(" ".join(args).encode())


# -- the client over the helper's unix socket ----------------------------------------------------------

@pytest.fixture
def helper_socket(fake: Path) -> Iterator[HelperSocket]:
    server = HelperSocket([*HELPER, "--ndsctl", str(fake)])
    yield server
    server.close()


@pytest.fixture(params=["binary", "unix"])
def ndsctl(request: pytest.FixtureRequest, fake: Path) -> Iterator[NdsCtl]:
    """The same NdsCtl API, by running ndsctl or through the helper's socket."""
    if request.param == "binary":
        yield NdsCtl(str(fake))
        return
    server = HelperSocket([*HELPER, "--ndsctl", str(fake)])
    yield NdsCtl(server.url)
    server.close()


async def test_client_lookup_auth_deauth(state: Path, ndsctl: NdsCtl) -> None:
    assert await ndsctl.client("02:00:00:00:00:09") is None
    for key in (MAC, IP, TOKEN, RHID):
        c = await ndsctl.client(key)
        assert c is not None and (c.ip, c.mac, c.token, c.state) == (IP, MAC, TOKEN, "Preauthenticated")
    await ndsctl.auth(RHID, minutes=60, download_kbps=2000, custom="consent=01J")
    c = await ndsctl.client(MAC)
    assert c is not None and c.state == "Authenticated" and c.fields["custom"] == CUSTOM
    with pytest.raises(NdsCtlError, match=r"auth exited 1: Failed to authenticate client aa:bb") as err:
        await ndsctl.auth(MAC, minutes=60)
    assert err.value.code == EXIT_NO
    assert await ndsctl.deauth(IP) is True
    assert await ndsctl.deauth(IP) is False
    assert [c["argv"][0] for c in calls(state)] == ["json"] * 5 + ["auth", "json", "auth", "deauth", "deauth"]


async def test_client_errors_map_alike(state: Path, ndsctl: NdsCtl) -> None:
    fake_ndsctl.update_state(state, running=False)
    with pytest.raises(NdsCtlError, match=r"json exited 3: ndsctl: opennds probably not yet started") as err:
        await ndsctl.client(MAC)
    assert err.value.code == EXIT_NO_DAEMON
    fake_ndsctl.update_state(state, running=True, busy=2)  # retried: each try is a new request
    assert await ndsctl.client(MAC) is not None
    fake_ndsctl.update_state(state, busy=5)
    with pytest.raises(NdsCtlError, match="busy") as err:
        await ndsctl.client(MAC)
    assert err.value.code == EXIT_BUSY
    fake_ndsctl.update_client(state, MAC, client_type='cpd"can')  # openNDS does not escape its JSON values
    with pytest.raises(NdsCtlError, match="not JSON"):
        await ndsctl.client(MAC)
    with pytest.raises(ValueError, match="not a MAC"):  # refused before anything is sent or run
        await ndsctl.client("$(reboot)")
    with pytest.raises(ValueError, match="buffers"):
        await ndsctl.auth(MAC, minutes=1, custom="x" * 100)


async def test_helper_timeout_reaches_the_client(state: Path, fake: Path) -> None:
    fake_ndsctl.update_state(state, sleep_s=30)
    server = HelperSocket([*HELPER, "--ndsctl", str(fake), "--timeout", "0.5"])
    try:
        with pytest.raises(NdsCtlError, match=r"json: .*json did not answer within 0\.5s") as err:
            await NdsCtl(server.url).client(MAC)
        assert err.value.code is None  # ndsctl did not finish, as when the daemon runs it itself
        assert "json <MAC>" in server.journal()
    finally:
        server.close()


async def test_no_helper_listening(tmp_path: Path) -> None:
    with pytest.raises(NdsCtlError, match=r"cannot reach the ndsctl helper at .*nosuch\.sock") as err:
        await NdsCtl(f"unix:{tmp_path / 'nosuch.sock'}").client(MAC)
    assert err.value.code is None


class FakeHelper:
    """A socket that answers every connection with fixed bytes (or never), to test the client's reading."""

    def __init__(self, answer: bytes | None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="nds", dir="/tmp")) / "s.sock"  # sun_path: 107 bytes at most
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(4)
        self.answer = answer
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.answer is None:
                self.held.append(conn)  # say nothing, close nothing
                continue
            with conn, contextlib.suppress(OSError):  # the client may stop reading: that is the point
                conn.recv(1024)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            conn.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


@pytest.mark.parametrize(("answer", "error"), [
    (b"", "closed without answering"),
    (b"hello\n", "not JSON"),
    (b'{"exit": 0}\n', "without exit, out, err"),
    (b'{"exit": "0", "out": "", "err": ""}\n', "wrong types"),
    (b'{"exit": 999, "out": "", "err": ""}\n', "wrong types"),
    (b'{"exit": null, "out": "", "err": "refused: unknown command"}\n', "json: refused: unknown command"),
    (b"x" * 2_000_000, "answered more than"),
    (None, r"did not answer within 0\.5s"),
])
async def test_client_reads_the_answer_carefully(answer: bytes | None, error: str) -> None:
    server = FakeHelper(answer)
    try:
        with pytest.raises(NdsCtlError, match=error) as err:
            await NdsCtl(f"unix:{server.path}", timeout_s=0.5).client(MAC)
        assert err.value.code is None
    finally:
        server.close()


async def test_concurrent_requests_each_get_their_own_helper(state: Path, helper_socket: HelperSocket) -> None:
    nds = NdsCtl(helper_socket.url)
    found = await asyncio.gather(*(nds.client(key) for key in (MAC, IP, TOKEN, RHID)))
    assert all(c is not None and c.mac == MAC for c in found)
    assert len(helper_socket.procs) == 4 and helper_socket.journal().count("exit 0") == 4
