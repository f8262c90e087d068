"""Where probe requests come from: a monitor-mode interface (scapy) or a pcap/pcapng replay (link type 127).

As with BLE, one small interface and two backends, picked by `[wifi.presence] source`: "mon0" sniffs the
interface (scapy imported only then), "replay:PATH[?fast]" replays a radiotap pcap or pcapng (what dumpcap
writes). Records go to the loop as (time, frame bytes); the parsing is sans-IO in probes.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from drivers.backoff import Backoff
from drivers.capture import FileReplay, ThreadSource, read_pcap, write_pcap

__all__ = ["LINKTYPE_RADIOTAP", "MonitorSource", "PcapReplay", "make_probe_source", "read_radiotap_pcap",
           "write_radiotap_pcap"]

log = logging.getLogger(__name__)

LINKTYPE_RADIOTAP = 127
_MAX_RECORD = 65536


def read_radiotap_pcap(f: BinaryIO) -> Iterator[tuple[float, bytes]]:
    _, records = read_pcap(f, f.read(24), {LINKTYPE_RADIOTAP}, "802.11 + radiotap (127)", _MAX_RECORD)
    return records


def write_radiotap_pcap(f: BinaryIO, records: list[tuple[float, bytes]]) -> None:
    write_pcap(f, LINKTYPE_RADIOTAP, records)


class PcapReplay(FileReplay):
    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, on_frame: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None], *, fast: bool = False) -> None:
        super().__init__(path, read_radiotap_pcap, loop, on_frame, on_state, speed=0 if fast else 1.0)


class MonitorSource(ThreadSource):
    """Sniffs probe requests on a monitor-mode interface with scapy (needs CAP_NET_RAW)."""

    def __init__(self, iface: str, loop: asyncio.AbstractEventLoop, on_frame: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None]) -> None:
        super().__init__(loop, on_frame, on_state)
        self.iface = iface

    def _run(self) -> None:
        backoff = Backoff(1.0, 30.0)
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
            if self._stop.wait(backoff.next()):
                return


def make_probe_source(source: str, loop: asyncio.AbstractEventLoop, on_frame: Callable[[float, bytes], None],
                      on_state: Callable[[str, str | None], None]) -> ThreadSource:
    if source.startswith("replay:"):
        spec, _, query = source[len("replay:"):].partition("?")
        return PcapReplay(Path(spec), loop, on_frame, on_state, fast="fast" in query.split("&"))
    return MonitorSource(source, loop, on_frame, on_state)
