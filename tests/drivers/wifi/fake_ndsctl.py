#!/usr/bin/env python3
"""A stand-in for openNDS's `ndsctl`: the same command line, output text, JSON and exit codes, backed by a JSON
state file instead of the daemon. Standard library only, so any python3 runs it.

    FAKE_NDSCTL_STATE=/path/state.json fake_ndsctl.py json|auth|deauth ARGS...

The state file: {"clients": [{"ip", "mac", "token", "state", ...}], "faskey", "gatewayname", "gatewayaddress",
"gatewayfqdn", "sessiontimeout", "running" (false: no daemon), "busy" (how many next runs find the lock held),
"sleep_s" (a daemon that does not answer), "calls" (every run is appended: argv, exit code)}. `write_state`,
`update_state`, `update_client` and `add_client` below build it; add_client makes the token the way openNDS does.

Copied from openNDS/openNDS @ b9fbb8d1e8b0619070d1cf0cbfdfcb5fcd2432a7 (11.0.0beta):
- src/ndsctl.c 396-524 (main): no argument prints usage and exits 1; `-s PATH` is skipped (the path is ignored,
  420-428); an unknown command: "Unknown command: X" on stderr, exit 1 (501-508); the arguments after the
  command are joined with "," into args[256], each later one cut by argi[128] (403-404, 510-518).
- src/ndsctl.c 241-261: nothing listening on the socket: "ndsctl: opennds probably not yet started (Error: …)"
  on stderr, exit 3 (286-300). 344-384: the lock held by another ndsctl: "ndsctl thread is busy, please try
  later." on stdout, exit 4.
- src/ndsctl.c 214-226 and 286-342: the request is "CMD ARGS\\r\\n\\r\\n"; for auth and deauth the daemon answers
  "Yes" or "No" and ndsctl prints "Client ARGS authenticated." / "Failed to authenticate client ARGS." (exit 0 / 1)
  and "Client ARGS deauthenticated." / "Client ARGS not found." (exit 0 / 1); json prints the daemon's text, exit 0.
- src/ndsctl_thread.c 212-278: the request is cut at its first CR or LF and dispatched on its prefix; json gets
  request+5, auth request+5, deauth request+7.
- src/ndsctl_thread.c 280-491 (ndsctl_auth): the arguments split on ","; minutes > 0 replace sessiontimeout;
  rates and quotas parsed with strtol; the client found by token/rhid, then IP, then MAC
  (src/client_list.c 216-233, 319-362); only a Preauthenticated client is authenticated (452-470), which sets
  session_start/session_end, the limits, and custom (the CUSTOM argument, or "bmE=" if none: src/auth.c 458-462).
- src/ndsctl_thread.c 493-521 (ndsctl_deauth) and src/auth.c 496-504: an Authenticated client is deleted from the
  client list (it comes back, when its device next talks to openNDS, with a new token); any other state answers
  "No", which ndsctl prints as "not found".
- src/util.c 1193-1420 (ndsctl_json): one client as "{\\n" + '  "key":"value",\\n' lines + "}\\n" (the last line
  without a comma), "{}\\n" for an unknown one, every client (client_list_length, clients by MAC) when the argument
  has 6 characters or fewer. Values are printed with %s, not JSON-escaped. Field order and "null"/"none" values
  as in util.c 1205-1310; state names from src/fw_iptables.c 75-86.
- token "%04hx%04hx" and hid = sha256hex(token) (src/client_list.c 122-127); rhid = sha256hex(hid + faskey)
  (src/client_list.c 332-346).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_NDSCTL_STATE"
COMMANDS = ("json", "status", "stop", "debuglevel", "deauth", "auth", "trust", "untrust", "b64decode", "b64encode")
DEFAULTS: dict[str, Any] = {"running": True, "busy": 0, "sleep_s": 0, "faskey": "", "gatewayname": "openNDS",
                            "gatewayaddress": "192.168.8.1:2050", "gatewayfqdn": "status.client",
                            "version": "11.0.0beta", "sessiontimeout": 1440, "clients": [], "calls": []}
USAGE = "Usage: ndsctl [options] command [arguments]\n"  # the first line of src/ndsctl.c usage() (169-211)


def write_state(path: Path, **values: Any) -> None:
    path.write_text(json.dumps(DEFAULTS | values, indent=1))


def read_state(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def update_state(path: Path, **values: Any) -> None:
    path.write_text(json.dumps(read_state(path) | values, indent=1))


def update_client(path: Path, mac: str, **values: Any) -> None:
    data = read_state(path)
    for c in data["clients"]:
        if c["mac"] == mac:
            c.update(values)
    path.write_text(json.dumps(data, indent=1))


def add_client(path: Path, ip: str, mac: str, *, state: str = "Preauthenticated", **extra: Any) -> dict[str, Any]:
    """A client as openNDS adds it when its device first talks to it (src/client_list.c 95-140)."""
    data = read_state(path)
    token = extra.pop("token", None) or f"{random.getrandbits(16):04x}{random.getrandbits(16):04x}"
    client = {"ip": ip, "mac": mac, "token": token, "state": state, "last_active": int(time.time())} | extra
    data["clients"].append(client)
    path.write_text(json.dumps(data, indent=1))
    return client


def hid_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """client_list_find_by_any: token (rhid if longer than 8), then IP, then MAC, each by exact strcmp."""
    clients: list[dict[str, Any]] = data["clients"]
    for c in clients:
        if len(key) > 8:
            if hashlib.sha256((hid_of(c["token"]) + data["faskey"]).encode()).hexdigest() == key:
                return c
        elif c["token"] == key:
            return c
    for field in ("ip", "mac"):
        for c in clients:
            if c[field] == key:
                return c
    return None


def strtol(text: str | None) -> int:
    m = re.match(r"\s*[+-]?\d+", text or "")
    return int(m.group()) if m else 0


def client_lines(data: dict[str, Any], c: dict[str, Any], now: int) -> list[tuple[str, str]]:
    """ndsctl_json_client, src/util.c 1193-1311."""
    def null0(n: int) -> str:
        return "null" if not n else str(n)

    start = int(c.get("session_start", 0))
    end = int(c.get("session_end", 0))
    down, up = int(c.get("download_bytes", 0)), int(c.get("upload_bytes", 0))
    duration = max(now - start, 1)
    lines = [("gatewayname", data["gatewayname_urlencoded"] if "gatewayname_urlencoded" in data
              else _urlencode(data["gatewayname"])),
             ("gatewayaddress", data["gatewayaddress"]), ("gatewayfqdn", data["gatewayfqdn"]),
             ("version", data["version"]), ("client_type", c.get("client_type") or "cpd_can"),
             ("mac", c["mac"]), ("ip", c["ip"]), ("clientif", c.get("clientif", "wlan0")),
             ("session_start", str(start)), ("session_end", null0(end)),
             ("last_active", str(c.get("last_active", now))), ("token", c.get("token") or "none"),
             ("state", c["state"]), ("custom", c.get("custom") or "none")]
    for way in ("download", "upload"):
        rate = int(c.get(f"{way}_rate", 0))
        lines += [(f"{way}_rate_limit_threshold", null0(rate)), (f"{way}_packet_rate", "null"),
                  (f"{way}_bucket_size", "null")]
    lines += [("download_quota", null0(int(c.get("download_quota", 0)))),
              ("upload_quota", null0(int(c.get("upload_quota", 0)))),
              ("download_this_session", str(down // 1024)), ("download_session_avg", f"{down / 125 / duration:.2f}"),
              ("upload_this_session", str(up // 1024)), ("upload_session_avg", f"{up / 125 / duration:.2f}")]
    return lines


def _urlencode(text: str) -> str:  # uh_urlencode, src/http_microhttpd_utils.c 147-173
    return "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~") else f"%{b:02x}"
                   for b in text.encode())


def render(lines: list[tuple[str, str]], indent: str) -> str:
    return "".join(f'  {indent}"{k}":"{v}"{"," if i < len(lines) - 1 else ""}\n' for i, (k, v) in enumerate(lines))


def daemon_json(data: dict[str, Any], arg: str, now: int) -> str:
    """ndsctl_json, src/util.c 1313-1420."""
    if len(arg) > 6:
        c = find(data, arg)
        return "{\n" + render(client_lines(data, c, now), "") + "}\n" if c else "{}\n"
    indent = "    "
    out = f'{{\n  "client_list_length":"{len(data["clients"])}",\n  "clients":{{\n'
    for i, c in enumerate(data["clients"]):
        out += f'{indent}"{c["mac"]}":{{\n' + render(client_lines(data, c, now), indent)
        out += f"{indent}}},\n" if i < len(data["clients"]) - 1 else f"{indent}}}\n"
    return out + "  }\n}\n"


def daemon_auth(data: dict[str, Any], arg: str, now: int) -> str:
    """ndsctl_auth, src/ndsctl_thread.c 280-491 (preemptive authentication off, its default)."""
    parts = arg.split(",")
    pick = parts + [None] * (7 - len(parts))  # strsep: NULL once the string is used up
    c = find(data, pick[0] or "")
    if c is None or c["state"] != "Preauthenticated":
        return "No"
    minutes = strtol(pick[1])
    seconds = 60 * minutes if minutes > 0 else 60 * int(data["sessiontimeout"])
    c.update(state="Authenticated", session_start=now, session_end=now + seconds if seconds > 0 else 0,
             upload_rate=strtol(pick[2]) if pick[2] is not None else 0,
             download_rate=strtol(pick[3]) if pick[3] is not None else 0,
             upload_quota=strtol(pick[4]) if pick[4] is not None else 0,
             download_quota=strtol(pick[5]) if pick[5] is not None else 0,
             custom=pick[6] or "bmE=")
    return "Yes"


def daemon_deauth(data: dict[str, Any], arg: str) -> str:
    """ndsctl_deauth, src/ndsctl_thread.c 493-521, and auth_change_state, src/auth.c 496-504."""
    c = find(data, arg)
    if c is None or c["state"] != "Authenticated":
        return "No"
    data["clients"].remove(c)
    return "Yes"


def run(argv: list[str], data: dict[str, Any]) -> int:
    i = 1
    if len(argv) <= i:
        sys.stdout.write(USAGE)
        return 1
    if argv[1] == "-s":
        if len(argv) >= 4:
            i = 3
        else:
            sys.stdout.write(USAGE)
            return 1
    if argv[1] == "-h":
        sys.stdout.write(USAGE)
        return 0
    if data["busy"] > 0:
        data["busy"] -= 1
        sys.stdout.write("ndsctl thread is busy, please try later.\n")
        return 4
    cmd = argv[i]
    if cmd not in COMMANDS:
        sys.stderr.write(f"Unknown command: {cmd}\n")
        return 1
    if cmd not in ("json", "auth", "deauth"):
        sys.stderr.write(f"fake ndsctl: {cmd} is not implemented\n")
        return 2
    args = ""
    if len(argv) > i + 1:
        args = argv[i + 1][:255]
        for extra in argv[i + 2:]:
            args = (args + ("," + extra)[:127])[:255]
    if not data["running"]:
        sys.stderr.write("ndsctl: opennds probably not yet started (Error: No such file or directory)\n")
        return 3
    time.sleep(float(data["sleep_s"]))
    now = int(time.time())
    if cmd == "json":
        sys.stdout.write(daemon_json(data, args, now))
        return 0
    if cmd == "auth":
        if daemon_auth(data, args, now) == "Yes":
            sys.stdout.write(f"Client {args} authenticated.\n")
            return 0
        sys.stdout.write(f"Failed to authenticate client {args}.\n")
        return 1
    if daemon_deauth(data, args) == "Yes":
        sys.stdout.write(f"Client {args} deauthenticated.\n")
        return 0
    sys.stdout.write(f"Client {args} not found.\n")
    return 1


def main() -> int:
    path = Path(os.environ[STATE_ENV])
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        data = DEFAULTS | json.load(f)
        code = run(sys.argv, data)
        data["calls"].append({"argv": sys.argv[1:], "exit": code})
        f.seek(0)
        f.truncate()
        json.dump(data, f, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main())
