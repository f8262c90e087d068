"""The serial transport on real ptys (pyserial on both ends): bytes both ways, unplug and replug with
backoff, a missing port with its reason, overruns counted when the loop falls behind, the one-off opens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from drivers.backoff import Backoff
from drivers.rfid.transport import (
    LINE_IDLE_S,
    MAX_PENDING_BYTES,
    PortState,
    SerialTransport,
    describe_error,
    open_port,
    probe_port,
)
from tests.conftest import wait_for


class Pty:
    """A pty pair behind a stable symlink, like /dev/serial/by-id/…: unplug removes the device."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(self.slave))

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None


@pytest.fixture
def pty(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = Pty(tmp_path / "ttyREADER")
    yield p
    p.unplug()


async def test_bytes_both_ways_and_state(pty: Pty) -> None:
    pty.plug()
    got: list[bytes] = []
    states: list[PortState] = []
    t = SerialTransport(str(pty.link), baudrate=115200, loop=asyncio.get_running_loop(), on_data=got.append,
                        on_state=states.append, name="t")
    t.start()
    try:
        await wait_for(lambda: states and states[-1].open, 5)
        assert pty.master is not None
        os.write(pty.master, b"\xff\x01\x02")
        await wait_for(lambda: b"".join(got) == b"\xff\x01\x02", 5)
        t.write(b"\x22\x00")
        deadline = time.monotonic() + 5
        out = b""
        while len(out) < 2 and time.monotonic() < deadline:
            try:
                out += os.read(pty.master, 10)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        assert out == b"\x22\x00" and t.opens == 1 and t.bytes_in == 3 and t.overruns == 0
    finally:
        await asyncio.to_thread(t.stop)
    assert states[-1] == PortState(False, "stopped")


async def test_missing_port_says_why_then_opens_when_plugged(pty: Pty) -> None:
    states: list[PortState] = []
    t = SerialTransport(str(pty.link), baudrate=57600, loop=asyncio.get_running_loop(), on_data=lambda d: None,
                        on_state=states.append, backoff=Backoff(0.05, 0.2))
    t.start()
    try:
        await wait_for(lambda: states, 5)
        assert not states[0].open and "No such file or directory" in (states[0].error or "")
        await asyncio.sleep(0.5)
        assert len(states) == 1  # the same error is reported once, not on every retry
        pty.plug()
        await wait_for(lambda: states[-1].open, 5)
        pty.unplug()  # the cable is pulled
        await wait_for(lambda: not states[-1].open, 5)
        pty.plug()  # and put back: the transport reopens by itself
        await wait_for(lambda: states[-1].open and t.opens == 2, 5)
    finally:
        await asyncio.to_thread(t.stop)


async def test_a_stalled_loop_loses_bytes_counted_not_memory(pty: Pty) -> None:
    pty.plug()
    got: list[bytes] = []
    states: list[PortState] = []
    loop = asyncio.get_running_loop()
    t = SerialTransport(str(pty.link), baudrate=115200, loop=loop, on_data=got.append, on_state=states.append)
    t.start()
    try:
        await wait_for(lambda: states and states[-1].open, 5)
        assert pty.master is not None
        chunk = b"\xaa" * 4096
        sent = 0
        start = time.monotonic()
        while t.overruns == 0 and time.monotonic() - start < 10:  # the loop is blocked: nothing is drained
            os.write(pty.master, chunk)
            sent += len(chunk)
            os.sched_yield()  # the reader thread runs; the event loop (this test) does not
        assert t.overruns > 0 and t.pending <= MAX_PENDING_BYTES
        await wait_for(lambda: got, 5)
        assert sum(map(len, got)) + t.overruns <= sent
    finally:
        await asyncio.to_thread(t.stop)


@contextlib.asynccontextmanager
async def quiet_marks(pty: Pty) -> AsyncIterator[list[bytes | str]]:
    """A transport on the plugged pty, open, recording its bytes and its quiet marks ("idle") in order."""
    pty.plug()
    seen: list[bytes | str] = []
    states: list[PortState] = []
    t = SerialTransport(str(pty.link), baudrate=115200, loop=asyncio.get_running_loop(), on_data=seen.append,
                        on_state=states.append, on_idle=lambda: seen.append("idle"))
    t.start()
    try:
        await wait_for(lambda: states and states[-1].open, 5)
        assert pty.master is not None
        yield seen
    finally:
        await asyncio.to_thread(t.stop)


def bursts(seen: list[bytes | str]) -> list[bytes]:
    """The bytes between quiet marks, joined: the last entry is what came after the last mark."""
    out: list[bytes] = [b""]
    for x in seen:
        if x == "idle":
            out.append(b"")
        else:
            assert isinstance(x, bytes)
            out[-1] += x
    return out


async def test_a_quiet_line_is_marked_in_order_once_per_silence(pty: Pty) -> None:
    async with quiet_marks(pty) as seen:
        assert pty.master is not None
        await asyncio.sleep(3 * LINE_IDLE_S)
        assert seen == []  # nothing arrived: a line that was never busy is not reported quiet
        os.write(pty.master, b"\xff")
        await wait_for(lambda: "idle" in seen, 5)
        await asyncio.sleep(4 * LINE_IDLE_S)
        os.write(pty.master, b"\x05\x22")
        await wait_for(lambda: seen.count("idle") == 2, 5)
        await asyncio.sleep(4 * LINE_IDLE_S)
        # one mark per silence, after the bytes before it (how the pty splits a write into reads is its own affair)
        assert bursts(seen) == [b"\xff", b"\x05\x22", b""]


async def test_a_busy_loop_does_not_make_a_quiet_line(pty: Pty) -> None:
    """The event loop held up while a frame arrives in two parts: the bytes still count as one burst."""
    async with quiet_marks(pty) as seen:
        assert pty.master is not None
        for i in range(5):
            os.write(pty.master, b"\xff")
            time.sleep(0.005)  # noqa: ASYNC251 - well inside a frame's gap, while the loop (this test) is blocked
            os.write(pty.master, b"\x05\x22\x00")
            time.sleep(4 * LINE_IDLE_S)  # noqa: ASYNC251 - the loop stays blocked past the quiet time
            await wait_for(lambda n=i + 1: seen.count("idle") == n, 5)
        assert bursts(seen) == [b"\xff\x05\x22\x00"] * 5 + [b""]  # a quiet mark after each whole frame only


def test_probe_and_open_port(pty: Pty, tmp_path: Path) -> None:
    assert "No such file or directory" in (probe_port(str(tmp_path / "nope"), 9600) or "")
    pty.plug()
    assert probe_port(str(pty.link), 9600) is None
    with open_port(str(pty.link), baudrate=9600) as port:
        port.write(b"A00101A2")
        port.flush()
    assert pty.master is not None and os.read(pty.master, 8) == b"A00101A2"


def test_describe_error_is_a_sentence() -> None:
    err = serial.SerialException(2, "could not open port /dev/ttyUSB9: [Errno 2] No such file or directory")
    assert "Traceback" not in describe_error(err) and describe_error(err)
    assert "Permission denied" in describe_error(PermissionError(13, "Permission denied", "/dev/ttyS0"))
