"""What the BLE and Wi-Fi drivers share: pcap and pcapng files, and a blocking source on its own thread.

pcapng (what dumpcap and Wireshark write by default), as the format's draft defines it (pcapng/pcapng @ 1572878,
draft-tuexen-opsawg-pcapng.md): blocks of type, total length, body padded to 4 bytes, total length again
(lines 164-218). The Section Header Block (0x0A0D0D0A, 674-760) gives the byte order of its section by its
byte-order magic 0x1A2B3C4D; an Interface Description Block (1, 828-925) the link type, snap length and options,
of which if_tsresol (9: 10^-n, or 2^-n with the top bit set; 10^-6 by default, 1016-1027) and if_tsoffset (14,
seconds added, 1086-1093) set the clock; an Enhanced Packet Block (6, 1146-1260) carries an interface id, a 64-bit
timestamp, captured and original lengths and the data; a Simple Packet Block (3, 1397-1480) only the original
length and the data, from interface 0, without a timestamp (the previous packet's time is used). Every other
block is skipped; the obsolete Packet Block (2) is refused. Every length is checked against what was read and
against the caller's record cap, so a corrupt length is a CaptureError, never a big allocation.

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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

__all__ = ["CAPTURE_MAGICS", "PCAPNG_MAGIC", "PCAP_MAGICS", "CaptureError", "FileReplay", "ThreadSource",
           "read_pcap", "write_pcap"]

# pcap magic -> (byte order, timestamp unit): microsecond and nanosecond files, either endianness.
PCAP_MAGICS: Final = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
                      b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
# The Section Header Block type: a palindrome, so the same bytes in either byte order.
PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
# The first four bytes of every file read_pcap takes.
CAPTURE_MAGICS: Final = frozenset(PCAP_MAGICS) | {PCAPNG_MAGIC}
_PCAPNG_BOM: Final = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_SHB, _IDB, _OBSOLETE_PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_OPT_END, _OPT_TSRESOL, _OPT_TSOFFSET = 0, 9, 14
# A section header or interface description holds only options (names, comments, a capture filter): 1 MiB is
# far more than dumpcap writes, and bounds what a corrupt length can make us allocate.
_MAX_META_BLOCK: Final = 1 << 20
# Room for a packet block's own fields and options beyond the packet data itself.
_PACKET_BLOCK_SLACK: Final = 1 << 16
_SKIP_CHUNK: Final = 1 << 16


class CaptureError(ValueError):
    """The file is not a capture we can read, or is corrupt from some point on."""


def read_pcap(f: BinaryIO, head: bytes, linktypes: set[int], what: str,
              max_record: int) -> tuple[int, Iterator[tuple[float, bytes]]]:
    """The link type and the (time, data) records of a pcap or pcapng file whose first 24 bytes are `head`.

    A pcapng file may describe several interfaces; all must have the link type of the first one."""
    if head[:4] == PCAPNG_MAGIC:
        return _Pcapng(f, max_record).open(head, linktypes, what)
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


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    ticks: int  # timestamp ticks per second: 10**n or 2**n
    unit: float  # seconds per tick, 1 / ticks, as pcap's own (1e-6, 1e-9) so both formats give the same floats
    offset: int  # seconds added to every timestamp


class _Pcapng:
    """One pass over a pcapng file: sections, their interfaces, and their packets."""

    def __init__(self, f: BinaryIO, max_record: int) -> None:
        self.f = f
        self.max_record = max_record
        self.order = "<"
        self.interfaces: list[_Interface] = []
        self.last_ts = 0.0

    def open(self, head: bytes, linktypes: set[int], what: str) -> tuple[int, Iterator[tuple[float, bytes]]]:
        self._section(head)
        while True:  # up to the first interface: its link type is the file's
            block = self._block()
            if block is None:
                raise CaptureError("pcapng file without an interface description (no packets)")
            btype, _ = block
            if btype in (_EPB, _SPB):
                raise CaptureError("pcapng packet before any interface description")
            if btype == _IDB:
                break
        first = self.interfaces[0].linktype
        if first not in linktypes:
            raise CaptureError(f"pcapng link type {first} is not {what}")
        return first, self._packets(first)

    def _read(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise CaptureError(f"pcapng {what} truncated")
        return data

    def _section(self, head: bytes) -> None:
        """A Section Header Block whose first 24 bytes are `head`: its byte order, and no interfaces yet."""
        if len(head) < 24:
            raise CaptureError("pcapng section header truncated")
        order = _PCAPNG_BOM.get(head[8:12])
        if order is None:
            raise CaptureError("pcapng section header without the byte-order magic")
        self.order = order
        total = struct.unpack_from(order + "I", head, 4)[0]
        major = struct.unpack_from(order + "H", head, 12)[0]
        if major != 1:
            raise CaptureError(f"pcapng major version {major} (only 1 exists)")
        self._check_length(total, 28, _MAX_META_BLOCK, "section header")
        self._trailer(self._read(total - 24, "section header"), total, "section header")
        self.interfaces = []

    def _check_length(self, total: int, minimum: int, maximum: int, what: str) -> None:
        if total % 4 or total < minimum:
            raise CaptureError(f"pcapng {what} with a block length of {total}")
        if total > maximum:
            raise CaptureError(f"pcapng {what} of {total} bytes (at most {maximum})")

    def _trailer(self, rest: bytes, total: int, what: str) -> bytes:
        """The block body from the bytes after the 8-byte header; the trailing length must repeat the first."""
        if struct.unpack(self.order + "I", rest[-4:])[0] != total:
            raise CaptureError(f"pcapng {what}: the trailing block length differs (corrupt file)")
        return rest[:-4]

    def _block(self) -> tuple[int, bytes] | None:
        """The next block's type and body (an empty body for a skipped one); None at the end of the file."""
        start = self.f.read(8)
        if not start:
            return None
        if len(start) < 8:
            raise CaptureError("pcapng block header truncated")
        if start[:4] == PCAPNG_MAGIC:
            self._section(start + self._read(16, "section header"))
            return _SHB, b""
        btype, total = struct.unpack(self.order + "II", start)
        if btype == _IDB:
            self._check_length(total, 20, _MAX_META_BLOCK, "interface description")
            self._interface(self._trailer(self._read(total - 8, "interface description"), total, "interface"))
            return btype, b""
        if btype in (_EPB, _SPB):
            what = "packet block"
            self._check_length(total, 16, self.max_record + _PACKET_BLOCK_SLACK, what)
            return btype, self._trailer(self._read(total - 8, what), total, what)
        if btype == _OBSOLETE_PB:
            raise CaptureError("obsolete pcapng Packet Block (type 2): rewrite the file with editcap")
        self._check_length(total, 12, total, f"block of type {btype:#x}")
        remaining, tail = total - 8, b""
        while remaining:  # skipped without being kept, a chunk at a time
            chunk = self._read(min(remaining, _SKIP_CHUNK), f"block of type {btype:#x}")
            remaining -= len(chunk)
            tail = (tail + chunk)[-4:]
        self._trailer(tail, total, f"block of type {btype:#x}")
        return btype, b""

    def _interface(self, body: bytes) -> None:
        linktype, _reserved, snaplen = struct.unpack_from(self.order + "HHI", body)
        ticks, offset = 10**6, 0
        pos = 8
        while pos + 4 <= len(body):
            code, length = struct.unpack_from(self.order + "HH", body, pos)
            value = body[pos + 4:pos + 4 + length]
            if len(value) < length:
                raise CaptureError("pcapng interface option runs past its block")
            if code == _OPT_END:
                break
            if code == _OPT_TSRESOL and length == 1:
                ticks = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
            elif code == _OPT_TSOFFSET and length == 8:
                offset = struct.unpack(self.order + "q", value)[0]
            pos += 4 + (length + 3) // 4 * 4
        if self.interfaces and linktype != self.interfaces[0].linktype:
            raise CaptureError(f"pcapng interface {len(self.interfaces)} has link type {linktype}, "
                               f"interface 0 has {self.interfaces[0].linktype}")
        self.interfaces.append(_Interface(linktype, snaplen, ticks, 1 / ticks, offset))

    def _packets(self, linktype: int) -> Iterator[tuple[float, bytes]]:
        while (block := self._block()) is not None:
            btype, body = block
            if btype == _IDB and self.interfaces[-1].linktype != linktype:  # the first one in a new section
                raise CaptureError(f"pcapng link type {self.interfaces[-1].linktype} after {linktype}")
            if btype == _EPB:
                yield self._enhanced(body)
            elif btype == _SPB:
                yield self._simple(body)

    def _enhanced(self, body: bytes) -> tuple[float, bytes]:
        if len(body) < 20:
            raise CaptureError("pcapng enhanced packet block too short")
        iface, high, low, caplen, _orig = struct.unpack_from(self.order + "IIIII", body)
        if iface >= len(self.interfaces):
            raise CaptureError(f"pcapng packet on interface {iface}, which was never described")
        if caplen > self.max_record or caplen > len(body) - 20:
            raise CaptureError(f"pcapng packet of {caplen} bytes in a {len(body) + 12}-byte block")
        i = self.interfaces[iface]
        sec, frac = divmod((high << 32) | low, i.ticks)
        self.last_ts = sec + i.offset + frac * i.unit
        return self.last_ts, body[20:20 + caplen]

    def _simple(self, body: bytes) -> tuple[float, bytes]:
        if not self.interfaces:
            raise CaptureError("pcapng simple packet block without interface 0")
        (orig,) = struct.unpack_from(self.order + "I", body)
        snaplen = self.interfaces[0].snaplen
        caplen = min(orig, snaplen) if snaplen else orig
        if caplen > self.max_record or caplen > len(body) - 4:
            raise CaptureError(f"pcapng simple packet of {caplen} bytes in a {len(body) + 12}-byte block")
        return self.last_ts, body[4:4 + caplen]


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
