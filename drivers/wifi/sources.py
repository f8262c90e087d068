"""Where probe requests come from: a monitor-mode interface (scapy) or a pcap replay (link type 127).

As with BLE, one small interface and two backends, picked by `[wifi.presence] source`: "mon0" sniffs the
interface (scapy imported only then), "replay:PATH[?fast]" replays a radiotap pcap. Records go to the loop
as (time, frame bytes); the parsing is sans-IO in probes.py.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["LINKTYPE_RADIOTAP", "MonitorSource", "PcapReplay", "make_probe_source", "read_radiotap_pcap",
           "write_radiotap_pcap"]

log = logging.getLogger(__name__)

LINKTYPE_RADIOTAP = 127
_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
           b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
_MAX_RECORD = 65536


def read_radiotap_pcap(f: BinaryIO) -> Iterator[tuple[float, bytes]]:
    head = f.read(24)
    if len(head) < 24 or head[:4] not in _MAGICS:
        raise ValueError("not a pcap file")
    order, unit = _MAGICS[head[:4]]
    if struct.unpack(order + "I", head[20:24])[0] != LINKTYPE_RADIOTAP:
        raise ValueError("pcap link type is not 802.11 + radiotap (127)")
    while True:
        rec = f.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise ValueError("pcap record header truncated")
        sec, frac, incl, _ = struct.unpack(order + "IIII", rec)
        if incl > _MAX_RECORD:
            raise ValueError(f"pcap record of {incl} bytes")
        data = f.read(incl)
        if len(data) < incl:
            raise ValueError("pcap record truncated")
        yield sec + frac * unit, data


def write_radiotap_pcap(f: BinaryIO, records: list[tuple[float, bytes]]) -> None:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RADIOTAP))
    for ts, data in records:
        f.write(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(data), len(data)) + data)


class _Source:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_frame: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None]) -> None:
        self._loop = loop
        self._on_frame = on_frame
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _deliver(self, ts: float, data: bytes) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_frame, ts, data)

    def _state(self, state: str, reason: str | None = None) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_state, state, reason)

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class PcapReplay(_Source):
    def __init__(self, path: Path, *args: object, fast: bool = False) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.path = path
        self.fast = fast
        self.done = threading.Event()

    def _run(self) -> None:
        try:
            with open(self.path, "rb") as f:
                self._state("ok")
                first: float | None = None
                started, wall = time.monotonic(), time.time()
                for ts, data in read_radiotap_pcap(f):
                    if self._stop.is_set():
                        return
                    if self.fast:
                        self._deliver(ts, data)
                        continue
                    first = ts if first is None else first
                    delay = (ts - first) - (time.monotonic() - started)
                    if delay > 0 and self._stop.wait(delay):
                        return
                    self._deliver(wall + ts - first, data)
        except FileNotFoundError:
            self._state("missing", f"capture file {self.path} not found")
        except (OSError, ValueError) as exc:
            self._state("error", f"capture {self.path}: {exc}")
        finally:
            self.done.set()


class MonitorSource(_Source):
    """Sniffs probe requests on a monitor-mode interface with scapy (needs CAP_NET_RAW)."""

    def __init__(self, iface: str, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.iface = iface

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                from scapy.config import conf

                sock = conf.L2listen(iface=self.iface)
                self._state("ok")
                try:
                    while not self._stop.is_set():
                        pkt = sock.recv()
                        if pkt is not None:
                            self._deliver(time.time(), bytes(pkt))
                finally:
                    sock.close()
            except PermissionError:
                self._state("unavailable", f"no permission to sniff on {self.iface}: the service needs CAP_NET_RAW")
            except Exception as exc:  # the interface is gone, down, or not in monitor mode: say so, retry
                self._state("unavailable", f"{self.iface}: {type(exc).__name__}: {exc}")
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 30.0)


def make_probe_source(source: str, loop: asyncio.AbstractEventLoop, on_frame: Callable[[float, bytes], None],
                      on_state: Callable[[str, str | None], None]) -> _Source:
    if source.startswith("replay:"):
        spec, _, query = source[len("replay:"):].partition("?")
        return PcapReplay(Path(spec), loop, on_frame, on_state, fast="fast" in query.split("&"))
    return MonitorSource(source, loop, on_frame, on_state)
