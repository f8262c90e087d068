"""What the BLE and Wi-Fi drivers share: pcap files, and a blocking source on its own thread.

A source hands (time, bytes) to the event loop and its state ("ok" or a reason) to `on_state`. A file
replay plays records at their recorded pace (the wall clock then drives the consumer) or as fast as
possible (the capture's own timestamps do), once or in a loop.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

__all__ = ["PCAP_MAGICS", "CaptureError", "FileReplay", "ThreadSource", "read_pcap", "write_pcap"]

# pcap magic -> (byte order, timestamp unit): microsecond and nanosecond files, either endianness.
PCAP_MAGICS: Final = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
                      b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}


class CaptureError(ValueError):
    """The file is not a capture we can read, or is corrupt from some point on."""


def read_pcap(f: BinaryIO, head: bytes, linktypes: set[int], what: str,
              max_record: int) -> tuple[int, Iterator[tuple[float, bytes]]]:
    """The link type and the (time, data) records of a pcap file whose first 24 bytes are `head`."""
    if len(head) < 24 or head[:4] not in PCAP_MAGICS:
        raise CaptureError("pcap header truncated" if head[:4] in PCAP_MAGICS else "not a pcap file")
    order, unit = PCAP_MAGICS[head[:4]]
    linktype = struct.unpack(order + "I", head[20:24])[0]
    if linktype not in linktypes:
        raise CaptureError(f"pcap link type {linktype} is not {what}")

    def records() -> Iterator[tuple[float, bytes]]:
        while True:
            rec = f.read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise CaptureError("pcap record header truncated")
            sec, frac, incl, _orig = struct.unpack(order + "IIII", rec)
            if incl > max_record:
                raise CaptureError(f"pcap record of {incl} bytes")
            data = f.read(incl)
            if len(data) < incl:
                raise CaptureError("pcap record truncated")
            yield sec + frac * unit, data

    return linktype, records()


def write_pcap(f: BinaryIO, linktype: int, records: list[tuple[float, bytes]]) -> None:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for ts, data in records:
        f.write(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(data), len(data)) + data)


class ThreadSource:
    """Blocking I/O on its own thread; (time, bytes) and state changes handed to the loop."""

    thread_prefix = "source"

    def __init__(self, loop: asyncio.AbstractEventLoop, on_item: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None]) -> None:
        self._loop = loop
        self._on_item = on_item
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.thread_prefix}-{type(self).__name__}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def live_clock(self) -> bool:
        """Whether the item times follow the wall clock (so the consumer may also tick on its own)."""
        return True

    def _deliver(self, ts: float, data: bytes) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_item, ts, data)

    def _state(self, state: str, reason: str | None = None) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_state, state, reason)

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class FileReplay(ThreadSource):
    """Replays the records `read` yields from a file: at recorded speed (default) or as fast as
    possible (speed 0), once or in a loop."""

    def __init__(self, path: Path, read: Callable[[BinaryIO], Iterator[tuple[float, bytes]]],
                 loop: asyncio.AbstractEventLoop, on_item: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None], *, speed: float = 1.0, repeat: bool = False) -> None:
        super().__init__(loop, on_item, on_state)
        self.path = path
        self._read = read
        self.speed = speed
        self.repeat = repeat
        self.done = threading.Event()

    @property
    def live_clock(self) -> bool:
        return self.speed > 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as f:
                    self._state("ok")
                    first: float | None = None
                    started, wall = time.monotonic(), time.time()
                    for ts, data in self._read(f):
                        if self._stop.is_set():
                            return
                        if self.speed > 0:
                            first = ts if first is None else first
                            offset = (ts - first) / self.speed
                            delay = offset - (time.monotonic() - started)
                            if delay > 0 and self._stop.wait(delay):
                                return
                            self._deliver(wall + offset, data)
                        else:
                            self._deliver(ts, data)
            except FileNotFoundError:
                self._state("missing", f"capture file {self.path} not found")
            except (OSError, ValueError) as exc:
                self._state("error", f"capture {self.path}: {exc}")
            self.done.set()
            if not self.repeat or self._stop.wait(1.0):
                return
