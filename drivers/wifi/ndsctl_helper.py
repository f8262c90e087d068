"""`o2o-edge ndsctl-helper`: openNDS's ndsctl run as root for the o2o-edge service, one checked request a connection.

ndsctl works only as root (it asks `libopennds.sh tmpfs` for the first tmpfs of /tmp, /run, /var, takes the lock
ndsctl.lock there and connects to openNDS's root-only ndsctl.sock beside it: src/ndsctl.c 344-384 and 458-502,
libopennds.sh 540-561 and 2430-2434, src/ndsctl_thread.c 102-117; on a failed connect it also removes
/tmp/ndsctl.lock, src/ndsctl.c 245-256), and the o2o-edge service
runs as its own user without a way to gain privileges. systemd/o2o-edge-ndsctl.socket listens on
/run/o2o-edge/ndsctl.sock (root:o2o-edge, 0660) and starts this program as root once per connection
(systemd/o2o-edge-ndsctl@.service: Accept=yes, the connection as stdin and stdout). It reads ONE request line:

    json KEY
    auth KEY MINUTES UPLOAD_KBPS DOWNLOAD_KBPS UPLOAD_QUOTA_KB DOWNLOAD_QUOTA_KB [CUSTOM]
    deauth KEY

KEY a MAC, an IP, an 8-hex token or a 64-hex rhid, the numbers decimal, CUSTOM base64, all within ndsctl's buffers
(drivers/wifi/ndsctl.py `check_args`, the client's own checks), printable ASCII words separated by one space, at
most MAX_REQUEST bytes with the LF. It runs the ndsctl binary with that argument list (no shell, a clean
environment, a timeout, at most MAX_OUTPUT bytes of output) and answers one line of JSON:

    {"exit": CODE, "out": "...", "err": "..."}

CODE is ndsctl's exit code, or null when ndsctl did not run or did not finish: a refused request (nothing run;
`err` says why, starting "refused:"), a missing binary, a timeout, too much output. Each request is logged to
stderr (the journal) by command and key kind, never the key, the MAC or CUSTOM.

No agent imports: the helper starts fast and runs as root with as little code as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import sys
import time
from typing import Final

from drivers.wifi.ndsctl import MAX_REQUEST, NdsCtlError, check_args, client_key_kind, run_ndsctl

__all__ = ["DEFAULT_NDSCTL", "ENV", "EXIT_FAILED", "EXIT_REFUSED", "NDSCTL_TIMEOUT_S", "READ_TIMEOUT_S", "Refused",
           "add_arguments", "main", "parse_request", "read_request", "run", "serve"]

DEFAULT_NDSCTL: Final = "/usr/bin/ndsctl"
READ_TIMEOUT_S: Final = 5.0  # a client that connects and says nothing is let go
NDSCTL_TIMEOUT_S: Final = 8.0  # under the client's 10 s, so it hears why
# ndsctl runs libopennds.sh (sh, df, awk, uci or cat): they need a PATH, nothing else from the caller.
ENV: Final = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
EXIT_REFUSED: Final = 64  # EX_USAGE: the request was refused, nothing run
EXIT_FAILED: Final = 69  # EX_UNAVAILABLE: ndsctl could not run or did not finish


class Refused(ValueError):
    """A request the helper will not run; the message says why (without the request's secrets)."""


def read_request(fd: int, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The one request line on fd, without its LF; never reads more than MAX_REQUEST + 1 bytes."""
    deadline = time.monotonic() + timeout_s
    data = bytearray()
    while b"\n" not in data:
        if len(data) >= MAX_REQUEST:
            raise Refused(f"a request longer than {MAX_REQUEST} bytes")
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise Refused(f"no request line within {timeout_s:g}s")
        try:
            chunk = os.read(fd, MAX_REQUEST + 1 - len(data))
        except OSError as exc:
            raise Refused(f"cannot read the request: {exc.strerror}") from exc
        if not chunk:
            raise Refused("the connection ended before a whole request line" if data else "no request")
        data += chunk
    line, _, rest = bytes(data).partition(b"\n")
    if len(line) >= MAX_REQUEST:
        raise Refused(f"a request longer than {MAX_REQUEST} bytes")
    if rest:
        raise Refused("more than one request line (one request a connection)")
    return line


def parse_request(line: bytes) -> tuple[str, ...]:
    """The ndsctl arguments a request line asks for, every one checked; Refused otherwise."""
    if b"\0" in line:
        raise Refused("a NUL byte in the request")
    if any(b < 0x20 or b > 0x7E for b in line):
        raise Refused("control or non-ASCII bytes in the request")
    words = line.decode("ascii").split(" ")
    if "" in words:
        raise Refused("empty words in the request (words are separated by one space)")
    try:
        return check_args(words)
    except ValueError as exc:
        raise Refused(str(exc)) from exc


def describe(args: tuple[str, ...]) -> str:
    """A request for the log: the command, the kind of key, the numbers; never the key or CUSTOM."""
    command, key, *rest = args
    text = f"{command} <{client_key_kind(key)}>"
    if command == "auth":
        text += " " + " ".join(rest[:5]) + (f" <custom, {len(rest[5])} chars>" if len(rest) > 5 else "")
    return text


def _log(message: str) -> None:
    sys.stderr.write(f"ndsctl-helper: {message}\n")
    sys.stderr.flush()


def _answer(code: int | None, out: str, err: str) -> None:
    line = json.dumps({"exit": code, "out": out, "err": err}, ensure_ascii=True) + "\n"
    try:
        sys.stdout.buffer.write(line.encode("ascii"))
        sys.stdout.buffer.flush()
    except OSError as exc:
        _log(f"the client left before the answer ({exc.strerror or exc.__class__.__name__})")


def serve(ndsctl: str = DEFAULT_NDSCTL, timeout_s: float = NDSCTL_TIMEOUT_S,
          request_timeout_s: float = READ_TIMEOUT_S) -> int:
    """Read one request on stdin, run it, answer on stdout; the exit code says how it went (0: ndsctl ran)."""
    started = time.monotonic()
    try:
        args = parse_request(read_request(sys.stdin.fileno(), request_timeout_s))
    except Refused as exc:
        _log(f"refused: {exc}; nothing run")
        _answer(None, "", f"refused: {exc}")
        return EXIT_REFUSED
    try:
        code, out, err = asyncio.run(run_ndsctl(ndsctl, args, timeout_s, env=ENV))
    except NdsCtlError as exc:
        _log(f"{describe(args)}: {exc}")
        _answer(None, "", str(exc))
        return EXIT_FAILED
    _log(f"{describe(args)}: exit {code} in {time.monotonic() - started:.2f}s")
    _answer(code, out, err)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ndsctl", default=DEFAULT_NDSCTL, help=f"the ndsctl binary (default {DEFAULT_NDSCTL})")
    parser.add_argument("--timeout", type=float, default=NDSCTL_TIMEOUT_S,
                        help=f"seconds ndsctl may take (default {NDSCTL_TIMEOUT_S:g})")
    parser.add_argument("--request-timeout", type=float, default=READ_TIMEOUT_S,
                        help=f"seconds the client may take to send its request (default {READ_TIMEOUT_S:g})")


def run(args: argparse.Namespace) -> int:
    return serve(args.ndsctl, args.timeout, args.request_timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="o2o-edge ndsctl-helper",
                                     description="run one checked ndsctl request from stdin as root; answer on stdout")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
