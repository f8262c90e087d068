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
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["EXIT_BUSY", "EXIT_NO", "EXIT_NO_DAEMON", "STATES", "NdsClient", "NdsCtl", "NdsCtlError",
           "parse_client_json"]

EXIT_NO: Final = 1  # the daemon answered "No" (auth failed, client not found), or a usage error
EXIT_NO_DAEMON: Final = 3  # nothing listens on the socket: openNDS is not running
EXIT_BUSY: Final = 4  # another ndsctl holds the lock; openNDS asks the caller to retry
STATES: Final = ("Preauthenticated", "Authenticated", "AuthBlocked", "Trusted")
_TIMEOUT_S: Final = 10.0
# A busy lock is held for one request; three tries a fifth of a second apart ride it out without hiding a hang.
_BUSY_TRIES: Final = 3
_BUSY_DELAY_S: Final = 0.2
# One client's JSON is under 2 KB; a bigger answer is not what we asked for.
_MAX_OUTPUT: Final = 64 * 1024
# ndsctl's buffers: args[256] for the joined arguments, argi[128] for each one after the first (src/ndsctl.c 403-404).
_MAX_ARGS: Final = 255
_MAX_ARG: Final = 126
# A MAC, an IPv4/IPv6 address, an 8-hex token or a 64-hex rhid; longer than 6 characters or json lists everyone.
_CLIENT: Final = re.compile(r"[0-9A-Za-z:.]{7,64}")
_REQUIRED: Final = ("ip", "mac", "token", "state")


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


def _client_arg(client: str) -> str:
    if not _CLIENT.fullmatch(client):
        raise ValueError(f"not a MAC, IP, token or rhid: {client[:70]!r}")
    return client


@dataclass(frozen=True, slots=True)
class NdsCtl:
    path: str
    timeout_s: float = _TIMEOUT_S

    async def _run_once(self, args: tuple[str, ...]) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(self.path, *args, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise NdsCtlError(f"cannot run {self.path}: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate()
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise NdsCtlError(f"{self.path} {args[0]} did not answer within {self.timeout_s:g}s") from exc
        if len(out) > _MAX_OUTPUT:
            raise NdsCtlError(f"{self.path} {args[0]} printed {len(out)} bytes", proc.returncode)
        return proc.returncode or 0, out.decode("utf-8", "replace").strip(), err.decode("utf-8", "replace").strip()

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
        args = [_client_arg(client)] + [str(n) for n in numbers]
        if custom:
            args.append(base64.b64encode(custom.encode()).decode())
        if any(len(a) > _MAX_ARG for a in args[1:]) or len(",".join(args)) > _MAX_ARGS:
            raise ValueError("ndsctl auth arguments longer than ndsctl's buffers (custom too long?)")
        await self._run("auth", *args)

    async def deauth(self, client: str) -> bool:
        """Deauthenticate a client: True if openNDS did, False if it knows no such client."""
        code, _ = await self._run("deauth", _client_arg(client), ok=(0, EXIT_NO))
        return code == 0
