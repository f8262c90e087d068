"""openNDS's control tool, `ndsctl`, run as a subprocess: `json` to look a client up, `auth`, `deauth`.

What openNDS 11.0.0beta (openNDS/openNDS @ b9fbb8d) does, from its sources:

    ndsctl json CLIENT
    ndsctl auth CLIENT SESSIONTIMEOUT UPLOADRATE DOWNLOADRATE UPLOADQUOTA DOWNLOADQUOTA [CUSTOM]
    ndsctl deauth CLIENT

- CLIENT is a MAC, an IP, a token, or an rhid (more than 8 characters = sha256hex(hid + faskey)), tried as
  token/rhid first, then IP, then MAC (src/client_list.c 216-233, 319-362).
- ndsctl joins the arguments after the command with "," into a 256-byte buffer, each one cut to 127 characters
  (src/ndsctl.c 403-404, 510-518), and the daemon splits them on "," (src/ndsctl_thread.c 312-369): no argument
  may contain a comma, and the whole must stay short.
- auth: minutes (0: openNDS's `sessiontimeout`), kbit/s, kB (0: openNDS's configured rate or quota, as
  src/auth.c 400-444 re-reads them), CUSTOM a string handed to BinAuth (base64 here, as the reference FAS scripts
  send it). Only a Preauthenticated client can be authenticated (src/ndsctl_thread.c 450-470).
- json CLIENT prints "{}" for an unknown client, else one object of string values (src/util.c 1193-1336):
  gatewayname, gatewayaddress, gatewayfqdn, version, client_type, mac, ip, clientif, session_start, session_end,
  last_active, token, state, custom, download/upload rate, packet rate, bucket size and quota fields,
  download_this_session, download_session_avg, upload_this_session, upload_session_avg. state is one of
  Preauthenticated, Authenticated, AuthBlocked, Trusted (src/fw_iptables.c 75-86). An argument of 6 characters or
  fewer lists every client instead (src/util.c 1414-1419); values are not JSON-escaped.
- Output and exit codes (src/ndsctl.c 214-226, 241-342, 344-384, 396-524): auth prints
  "Client ARGS authenticated." (0) or "Failed to authenticate client ARGS." (1), deauth "Client X deauthenticated."
  (0) or "Client X not found." (1), where ARGS is the comma-joined arguments; json prints the daemon's answer (0);
  an unknown command exits 1 ("Unknown command: …" on stderr); no daemon on the socket exits 3 ("ndsctl: opennds
  probably not yet started (Error: …)" on stderr); 2 is an abnormal reply; 4 means another ndsctl holds the lock
  ("ndsctl thread is busy, please try later." on stdout: the caller is to retry); 5 and 6 are lock-file errors.
- `-s PATH` is accepted and ignored (src/ndsctl.c 173, 420-428): ndsctl finds the socket itself, as
  `ndsctlsocket` (default ndsctl.sock) in the first tmpfs of /tmp, /run, /var (libopennds.sh `tmpfs`, 540-561,
  2430-2434), and creates its lock file `ndsctl.lock` there; the daemon creates the socket without a chmod
  (src/ndsctl_thread.c 102-117), so by default only root can connect.

Every command runs with an argument list (no shell) and a timeout; a failure is an NdsCtlError with the exit
code and what ndsctl said.

Since ndsctl works only as root, the service reaches it through a small root helper (drivers/wifi/ndsctl_helper.py,
systemd/o2o-edge-ndsctl.socket): `NdsCtl("unix:/run/o2o-edge/ndsctl.sock")` sends it one request line
(`json KEY`, `auth KEY MINUTES UP DOWN UPQ DOWNQ [CUSTOM]`, `deauth KEY`) and reads one JSON line back,
{"exit": CODE, "out": TEXT, "err": TEXT}, CODE null when ndsctl did not run or did not finish (refused, missing,
timed out, too much output). Both sides check the arguments with `check_args` below, and both run ndsctl (the
helper) or read its answer (the client) with the same code, so a result means the same whichever way it came.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["COMMANDS", "EXIT_BUSY", "EXIT_NO", "EXIT_NO_DAEMON", "HELPER_PREFIX", "MAX_OUTPUT", "MAX_REQUEST",
           "STATES", "NdsClient", "NdsCtl", "NdsCtlError", "check_args", "client_key_kind", "is_client_key",
           "parse_answer", "parse_client_json", "request_line", "run_ndsctl"]

EXIT_NO: Final = 1  # the daemon answered "No" (auth failed, client not found), or a usage error
EXIT_NO_DAEMON: Final = 3  # nothing listens on the socket: openNDS is not running
EXIT_BUSY: Final = 4  # another ndsctl holds the lock; openNDS asks the caller to retry
STATES: Final = ("Preauthenticated", "Authenticated", "AuthBlocked", "Trusted")
_TIMEOUT_S: Final = 10.0
# A busy lock is held for one request; three tries a fifth of a second apart ride it out without hiding a hang.
_BUSY_TRIES: Final = 3
_BUSY_DELAY_S: Final = 0.2
# One client's JSON is under 2 KB; a bigger answer is not what we asked for (ndsctl is stopped past it).
MAX_OUTPUT: Final = 64 * 1024
# ndsctl's buffers: args[256] for the joined arguments, argi[128] for each one after the first (src/ndsctl.c 403-404).
_MAX_ARGS: Final = 255
_MAX_ARG: Final = 126
# A MAC, an IPv4/IPv6 address, an 8-hex token or a 64-hex rhid; longer than 6 characters or json lists everyone.
_CLIENT: Final = re.compile(r"[0-9A-Za-z:.]{7,64}")
_MAC: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_TOKEN: Final = re.compile(r"[0-9a-f]{8}")  # "%04hx%04hx" (src/client_list.c 122-127)
_RHID: Final = re.compile(r"[0-9a-f]{64}")  # sha256hex(hid + faskey)
# auth's numbers as decimal digits: minutes (60 * minutes must fit the daemon's int, src/ndsctl_thread.c 287-323),
# kbit/s (int) and kB (unsigned long long; an int's worth is plenty).
_NUMBER: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_INT_MAX: Final = 2**31 - 1
_NUMBER_MAX: Final = (_INT_MAX // 60, _INT_MAX, _INT_MAX, _INT_MAX, _INT_MAX)
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
COMMANDS: Final = ("json", "auth", "deauth")
_REQUIRED: Final = ("ip", "mac", "token", "state")
HELPER_PREFIX: Final = "unix:"  # [wifi.portal] ndsctl = "unix:/run/o2o-edge/ndsctl.sock": the root helper's socket
# The helper's request line: "auth", a 64-hex rhid, five numbers and CUSTOM stay under 300 bytes.
MAX_REQUEST: Final = 512
# Its answer: MAX_OUTPUT of text, JSON-escaped (at most 6 bytes a character), stdout and stderr, and the frame.
_MAX_ANSWER: Final = 2 * 6 * MAX_OUTPUT + 1024


class NdsCtlError(RuntimeError):
    """ndsctl failed, is missing, timed out, or answered something we cannot read."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # ndsctl's exit code; None when it did not run or did not finish


@dataclass(frozen=True, slots=True)
class NdsClient:
    """One client as `ndsctl json CLIENT` describes it; every value is the string openNDS printed."""

    ip: str
    mac: str
    token: str
    state: str  # one of STATES
    fields: dict[str, str]

    @property
    def preauthenticated(self) -> bool:
        return self.state == "Preauthenticated"


def parse_client_json(text: str) -> NdsClient | None:
    """The client in the output of `ndsctl json CLIENT`: None for "{}" (unknown to openNDS)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested brackets
        raise NdsCtlError(f"ndsctl json printed something that is not JSON: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise NdsCtlError("ndsctl json did not print an object")
    if not data:
        return None
    if "clients" in data:
        raise NdsCtlError("ndsctl json listed every client instead of one")
    fields = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise NdsCtlError(f"ndsctl json without {', '.join(missing)}")
    if fields["state"] not in STATES:
        raise NdsCtlError(f"ndsctl json with an unknown state {fields['state'][:40]!r}")
    return NdsClient(fields["ip"], fields["mac"].lower(), fields["token"], fields["state"], fields)


def client_key_kind(key: str) -> str | None:
    """"MAC", "IP", "token" or "rhid" for a key ndsctl may be given, of 7 to 64 characters (`ndsctl json` lists
    every client for 6 or fewer); None for anything else."""
    if not _CLIENT.fullmatch(key):
        return None
    for kind, pattern in (("MAC", _MAC), ("token", _TOKEN), ("rhid", _RHID)):
        if pattern.fullmatch(key):
            return kind
    try:
        ipaddress.ip_address(key)
    except ValueError:
        return None
    return "IP"


def is_client_key(key: str) -> bool:
    """A MAC, an IPv4 or IPv6 address, an 8-hex token or a 64-hex rhid (client_key_kind)."""
    return client_key_kind(key) is not None


def _client_arg(client: str) -> str:
    if not is_client_key(client):
        raise ValueError(f"not a MAC, IP, token or rhid: {client[:70]!r}")
    return client


def check_args(args: Sequence[str]) -> tuple[str, ...]:
    """`args` (COMMAND ARG...) if they are a request ndsctl may be given: `json KEY`, `deauth KEY` or
    `auth KEY MINUTES UPLOAD_KBPS DOWNLOAD_KBPS UPLOAD_QUOTA_KB DOWNLOAD_QUOTA_KB [CUSTOM]` (CUSTOM base64), every
    one checked, within ndsctl's buffers; ValueError saying what is wrong otherwise."""
    if not args or args[0] not in COMMANDS:
        what = repr(args[0][:20]) if args else "nothing"
        raise ValueError(f"unknown command {what} (only {', '.join(COMMANDS)})")
    command, rest = args[0], tuple(args[1:])
    if command in ("json", "deauth"):
        if len(rest) != 1:
            raise ValueError(f"{command} takes one KEY (a MAC, IP, token or rhid), not {len(rest)} arguments")
        return (command, _client_arg(rest[0]))
    if len(rest) not in (6, 7):
        raise ValueError("auth takes KEY MINUTES UPLOAD_KBPS DOWNLOAD_KBPS UPLOAD_QUOTA_KB DOWNLOAD_QUOTA_KB "
                         f"[CUSTOM], not {len(rest)} arguments")
    _client_arg(rest[0])
    names = ("minutes", "upload_kbps", "download_kbps", "upload_quota_kb", "download_quota_kb")
    for name, text, top in zip(names, rest[1:6], _NUMBER_MAX, strict=True):
        if not _NUMBER.fullmatch(text) or int(text) > top:
            raise ValueError(f"auth {name} is not a number from 0 to {top}: {text[:20]!r}")
    if len(rest) == 7 and not (rest[6] and _BASE64.fullmatch(rest[6])):
        raise ValueError("auth CUSTOM is not base64")
    if any(len(a) > _MAX_ARG for a in rest[1:]) or len(",".join(rest)) > _MAX_ARGS:
        raise ValueError("ndsctl auth arguments longer than ndsctl's buffers (custom too long?)")
    return (command, *rest)


def request_line(args: Sequence[str]) -> bytes:
    """The helper's request for these (checked) arguments: one line, words separated by one space."""
    return (" ".join(check_args(args)) + "\n").encode("ascii")


def parse_answer(data: bytes) -> tuple[int | None, str, str]:
    """The helper's answer line: (exit code or None, stdout, stderr); NdsCtlError if it is not one."""
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise NdsCtlError(f"the ndsctl helper answered something that is not JSON: {data[:60]!r}") from exc
    if not isinstance(answer, dict) or set(answer) != {"exit", "out", "err"}:
        raise NdsCtlError("the ndsctl helper answered an object without exit, out, err")
    code, out, err = answer["exit"], answer["out"], answer["err"]
    if not (code is None or (type(code) is int and 0 <= code <= 255)) or not isinstance(out, str) \
            or not isinstance(err, str):
        raise NdsCtlError("the ndsctl helper answered exit, out, err of the wrong types")
    return code, out, err


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    data = bytearray()
    while stream is not None:
        chunk = await stream.read(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > cap:
            raise OverflowError(len(data))
    return bytes(data)


async def _drain(stream: asyncio.StreamReader | None) -> None:
    while stream is not None and await stream.read(65536):
        pass


async def run_ndsctl(path: str, args: Sequence[str], timeout_s: float,
                     env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ndsctl once with an argument list (no shell): (exit code, stdout, stderr). NdsCtlError (code None)
    if it cannot run, does not finish within timeout_s, or prints more than MAX_OUTPUT: it is killed then, with
    what it started (ndsctl runs libopennds.sh, which runs df and awk: they would hold its pipes open)."""
    try:
        proc = await asyncio.create_subprocess_exec(path, *args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    except OSError as exc:
        raise NdsCtlError(f"cannot run {path}: {exc.strerror or exc}") from exc
    readers = [asyncio.ensure_future(_read_capped(stream, MAX_OUTPUT)) for stream in (proc.stdout, proc.stderr)]
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await asyncio.gather(*readers)
            code = await proc.wait()
    except (TimeoutError, OverflowError) as exc:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session and process group: ndsctl and its children
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):  # asyncio sees the process gone once its pipes have ended too
                await asyncio.gather(_drain(proc.stdout), _drain(proc.stderr))
                await proc.wait()
        if isinstance(exc, OverflowError):
            raise NdsCtlError(f"{path} {args[0]} printed more than {MAX_OUTPUT} bytes") from exc
        raise NdsCtlError(f"{path} {args[0]} did not answer within {timeout_s:g}s") from exc
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class NdsCtl:
    """openNDS through ndsctl: `path` is the ndsctl binary, or "unix:SOCKET", the root helper's socket."""

    path: str
    timeout_s: float = _TIMEOUT_S

    async def _run_once(self, args: tuple[str, ...]) -> tuple[int, str, str]:
        if self.path.startswith(HELPER_PREFIX):
            code, out, err = await self._ask_helper(self.path.removeprefix(HELPER_PREFIX), args)
        else:
            code, out, err = await run_ndsctl(self.path, args, self.timeout_s)
        return code, out.strip(), err.strip()

    async def _ask_helper(self, socket_path: str, args: tuple[str, ...]) -> tuple[int, str, str]:
        """One request to the helper over its unix socket; its answer mapped as running ndsctl here would be."""
        request = request_line(args)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_unix_connection(socket_path)
                writer.write(request)
                await writer.drain()
                data = await _read_capped(reader, _MAX_ANSWER)
        except TimeoutError as exc:
            raise NdsCtlError(f"{self.path} {args[0]} did not answer within {self.timeout_s:g}s") from exc
        except OverflowError as exc:
            raise NdsCtlError(f"{self.path} {args[0]} answered more than {_MAX_ANSWER} bytes") from exc
        except OSError as exc:
            raise NdsCtlError(f"cannot reach the ndsctl helper at {socket_path}: "
                              f"{exc.strerror or exc.__class__.__name__}") from exc
        finally:
            if writer is not None:
                writer.close()
        if not data:
            raise NdsCtlError(f"{self.path} {args[0]}: the ndsctl helper closed without answering")
        code, out, err = parse_answer(data)
        if code is None:  # ndsctl did not run or did not finish: the helper says why
            raise NdsCtlError(f"{self.path} {args[0]}: {err[:200]}")
        return code, out, err

    async def _run(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        for attempt in range(1, _BUSY_TRIES + 1):
            code, out, err = await self._run_once(args)
            if code != EXIT_BUSY or attempt == _BUSY_TRIES:
                break
            await asyncio.sleep(_BUSY_DELAY_S * attempt)
        if code not in ok:
            said = (err or out)[:200]
            raise NdsCtlError(f"{self.path} {args[0]} exited {code}: {said}", code)
        return code, out

    async def client(self, key: str) -> NdsClient | None:
        """The client openNDS knows by this MAC, IP, token or rhid; None if it knows none."""
        _, out = await self._run("json", _client_arg(key))
        return parse_client_json(out)

    async def auth(self, client: str, *, minutes: int, upload_kbps: int = 0, download_kbps: int = 0,
                   upload_quota_kb: int = 0, download_quota_kb: int = 0, custom: str = "") -> None:
        """Authenticate a Preauthenticated client; NdsCtlError (code EXIT_NO) if openNDS refused."""
        numbers = (minutes, upload_kbps, download_kbps, upload_quota_kb, download_quota_kb)
        if any(n < 0 for n in numbers):
            raise ValueError("ndsctl auth minutes, rates and quotas are >= 0 (0: openNDS's configured value)")
        args = ["auth", client] + [str(n) for n in numbers]
        if custom:
            args.append(base64.b64encode(custom.encode()).decode())
        await self._run(*check_args(args))

    async def deauth(self, client: str) -> bool:
        """Deauthenticate a client: True if openNDS did, False if it knows no such client."""
        code, _ = await self._run("deauth", _client_arg(client), ok=(0, EXIT_NO))
        return code == 0
