"""drivers/wifi/ndsctl.py against fake_ndsctl.py, a stand-in for openNDS's ndsctl with the same command line,
output, JSON and exit codes (its docstring cites the openNDS source lines each answer copies), run as a real
subprocess."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wifi.ndsctl import (
    EXIT_BUSY,
    EXIT_NO,
    EXIT_NO_DAEMON,
    NdsCtl,
    NdsCtlError,
    parse_client_json,
)
from tests.drivers.wifi import fake_ndsctl

FAKE = Path(fake_ndsctl.__file__)
FASKEY = "c775e7b757ede630cd0aa1113bd102661ab38829ca52a6422ab782862f268646"
MAC, IP, TOKEN = "aa:bb:cc:dd:ee:ff", "192.168.8.123", "1a2b3c4d"
RHID = hashlib.sha256((hashlib.sha256(TOKEN.encode()).hexdigest() + FASKEY).encode()).hexdigest()
# The keys of one client in `ndsctl json`, in the order src/util.c 1205-1310 prints them.
JSON_KEYS = ["gatewayname", "gatewayaddress", "gatewayfqdn", "version", "client_type", "mac", "ip", "clientif",
             "session_start", "session_end", "last_active", "token", "state", "custom",
             "download_rate_limit_threshold", "download_packet_rate", "download_bucket_size",
             "upload_rate_limit_threshold", "upload_packet_rate", "upload_bucket_size", "download_quota",
             "upload_quota", "download_this_session", "download_session_avg", "upload_this_session",
             "upload_session_avg"]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "opennds.json"
    fake_ndsctl.write_state(path, faskey=FASKEY, gatewayname="o2o Edge Test")
    fake_ndsctl.add_client(path, IP, MAC, token=TOKEN, last_active=1_700_000_000)
    monkeypatch.setenv(fake_ndsctl.STATE_ENV, str(path))
    return path


@pytest.fixture
def ndsctl() -> NdsCtl:
    assert os.access(FAKE, os.X_OK), "fake_ndsctl.py must be executable (git keeps the mode)"
    return NdsCtl(str(FAKE))


def fake(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FAKE), *args], capture_output=True, text=True, check=False)


def test_fake_json_text_is_what_opennds_prints(state: Path) -> None:
    """src/util.c 1327-1330 and 1205-1310: "{", then '  "key":"value",' lines, the last without a comma, "}"."""
    out = fake("json", MAC)
    assert out.returncode == 0 and out.stdout.startswith('{\n  "gatewayname":"o2o%20Edge%20Test",\n')
    assert out.stdout.endswith('  "upload_session_avg":"0.00"\n}\n')
    assert '  "session_end":"null",\n  "last_active":"1700000000",\n  "token":"1a2b3c4d",\n' \
           '  "state":"Preauthenticated",\n  "custom":"none",\n' in out.stdout
    assert list(json.loads(out.stdout)) == JSON_KEYS
    assert fake("json", "02:00:00:00:00:09").stdout == "{}\n"
    everyone = json.loads(fake("json").stdout)  # 6 characters or fewer: the whole list (src/util.c 1414-1419)
    assert everyone["client_list_length"] == "1" and list(everyone["clients"]) == [MAC]


def test_fake_command_line(state: Path) -> None:
    assert fake("-s", "/ignored/ndsctl.sock", "json", IP).returncode == 0  # -s PATH is skipped (ndsctl.c 420-428)
    unknown = fake("nosuch")
    assert (unknown.returncode, unknown.stderr) == (1, "Unknown command: nosuch\n")
    assert fake().returncode == 1


async def test_unknown_client(state: Path, ndsctl: NdsCtl) -> None:
    assert await ndsctl.client("02:00:00:00:00:09") is None


@pytest.mark.parametrize("key", [MAC, IP, TOKEN, RHID])
async def test_preauthenticated_client_by_mac_ip_token_or_rhid(state: Path, ndsctl: NdsCtl, key: str) -> None:
    c = await ndsctl.client(key)
    assert c is not None and (c.ip, c.mac, c.token, c.state) == (IP, MAC, TOKEN, "Preauthenticated")
    assert c.preauthenticated and list(c.fields) == JSON_KEYS and c.fields["session_end"] == "null"


async def test_auth_then_authenticated_then_deauth(state: Path, ndsctl: NdsCtl) -> None:
    await ndsctl.auth(RHID, minutes=60, download_kbps=2000, custom="consent=01J")
    calls = fake_ndsctl.read_state(state)["calls"]
    custom = base64.b64encode(b"consent=01J").decode()
    assert calls[-1] == {"argv": ["auth", RHID, "60", "0", "2000", "0", "0", custom], "exit": 0}
    c = await ndsctl.client(MAC)
    assert c is not None and c.state == "Authenticated" and not c.preauthenticated
    assert c.fields["custom"] == custom and c.fields["download_rate_limit_threshold"] == "2000"
    assert int(c.fields["session_end"]) - int(c.fields["session_start"]) == 3600
    with pytest.raises(NdsCtlError, match="Failed to authenticate client") as err:  # only Preauthenticated
        await ndsctl.auth(MAC, minutes=60)
    assert err.value.code == EXIT_NO
    assert await ndsctl.deauth(IP) is True
    assert await ndsctl.client(MAC) is None  # openNDS deletes the client (src/auth.c 496-504)
    assert await ndsctl.deauth(IP) is False


async def test_auth_without_custom_and_of_an_unknown_client(state: Path, ndsctl: NdsCtl) -> None:
    with pytest.raises(NdsCtlError, match="exited 1: Failed to authenticate client 02:00:00:00:00:09,0,0,0,0,0"):
        await ndsctl.auth("02:00:00:00:00:09", minutes=0)
    await ndsctl.auth(MAC, minutes=0)
    c = await ndsctl.client(MAC)
    assert c is not None and c.fields["custom"] == "bmE="  # src/auth.c 458-462
    assert int(c.fields["session_end"]) - int(c.fields["session_start"]) == 1440 * 60  # 0: sessiontimeout


async def test_deauth_of_a_preauthenticated_client_is_not_found(state: Path, ndsctl: NdsCtl) -> None:
    assert await ndsctl.deauth(MAC) is False
    assert fake_ndsctl.read_state(state)["calls"][-1]["exit"] == EXIT_NO


async def test_bad_json_is_an_error(state: Path, ndsctl: NdsCtl) -> None:
    fake_ndsctl.update_client(state, MAC, client_type='cpd"can')  # openNDS prints values with %s, unescaped
    with pytest.raises(NdsCtlError, match="not JSON"):
        await ndsctl.client(MAC)


async def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(NdsCtlError, match="cannot run") as err:
        await NdsCtl(str(tmp_path / "ndsctl")).client(MAC)
    assert err.value.code is None


async def test_timeout(state: Path) -> None:
    fake_ndsctl.update_state(state, sleep_s=30)
    with pytest.raises(NdsCtlError, match=r"did not answer within 0\.5s"):
        await NdsCtl(str(FAKE), timeout_s=0.5).client(MAC)


async def test_opennds_not_running(state: Path, ndsctl: NdsCtl) -> None:
    fake_ndsctl.update_state(state, running=False)
    with pytest.raises(NdsCtlError, match="opennds probably not yet started") as err:
        await ndsctl.client(MAC)
    assert err.value.code == EXIT_NO_DAEMON


async def test_busy_lock_is_retried_then_reported(state: Path, ndsctl: NdsCtl) -> None:
    fake_ndsctl.update_state(state, busy=2)
    assert await ndsctl.client(MAC) is not None
    fake_ndsctl.update_state(state, busy=5)
    with pytest.raises(NdsCtlError, match="busy") as err:
        await ndsctl.client(MAC)
    assert err.value.code == EXIT_BUSY


@pytest.mark.parametrize("key", ["", "1.2.3", "aa,bb,cc,dd", "$(reboot)", "a" * 65])
async def test_keys_that_are_no_client_are_refused_before_running(ndsctl: NdsCtl, key: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        await ndsctl.client(key)


async def test_arguments_that_do_not_fit_ndsctl_are_refused(ndsctl: NdsCtl) -> None:
    with pytest.raises(ValueError, match="buffers"):
        await ndsctl.auth(MAC, minutes=1, custom="x" * 100)
    with pytest.raises(ValueError, match=">= 0"):
        await ndsctl.auth(MAC, minutes=-1)


@pytest.mark.parametrize(("text", "error"), [
    ("[]", "not print an object"),
    ('{"clients":{}, "client_list_length":"0"}', "every client"),
    ('{"ip":"1.2.3.4","mac":"aa:bb:cc:dd:ee:ff","state":"Authenticated"}', "without token"),
    ('{"ip":"1.2.3.4","mac":"aa:bb:cc:dd:ee:ff","token":"1a2b3c4d","state":"Gone"}', "unknown state"),
    ("ndsctl thread is busy", "not JSON"),
    ("[" * 60_000, "not JSON"),
])
def test_parse_client_json_errors(text: str, error: str) -> None:
    with pytest.raises(NdsCtlError, match=error):
        parse_client_json(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.dictionaries(st.sampled_from(["ip", "mac", "token", "state", "x"]),
                                                        st.one_of(st.text(max_size=20), st.integers()))
                 .map(json.dumps)))
def test_fuzz_json_parses_or_raises_ndsctl_error(text: str) -> None:
    with contextlib.suppress(NdsCtlError):
        parse_client_json(text)
