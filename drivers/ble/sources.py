"""Where advertising reports come from: an adapter (scapy's HCI socket) or a capture file.

One small interface, two backends chosen by the config's `[ble] source` (as bleak picks a backend):
"hci0" opens the adapter, "replay:PATH" replays a btsnoop or pcap file. Each runs its blocking I/O on
its own thread and hands HCI event packets to the event loop. Only the adapter backend imports scapy,
and only when it starts, so a gateway without BLE never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from drivers.backoff import Backoff
from drivers.ble.captures import read_capture
from drivers.capture import FileReplay, ThreadSource

__all__ = ["AdvertSource", "HciSource", "ReplaySource", "make_source"]

log = logging.getLogger(__name__)

# LE Set Scan Parameters / Enable (Core 5.x Vol 4 Part E 7.8.10, 7.8.11): passive, 10 ms interval and window,
# public own address, accept all; duplicates NOT filtered, so every advert gives an RSSI sample.
OGF_LE = 0x08
OCF_SET_SCAN_PARAMETERS = 0x000B
OCF_SET_SCAN_ENABLE = 0x000C
SCAN_PARAMETERS = bytes((0x00, 0x10, 0x00, 0x10, 0x00, 0x00, 0x00))
SCAN_ENABLE = bytes((0x01, 0x00))
SCAN_DISABLE = bytes((0x00, 0x00))


class AdvertSource(ThreadSource):
    """Hands (time, H4 event packet) to the loop. The time is the source's clock: the wall clock for an
    adapter and a replay at recorded speed, the capture's own timestamps for a replay as fast as possible
    (so a replay decides exactly as live did)."""

    thread_prefix = "ble"


class ReplaySource(FileReplay):
    """Replays a btsnoop or pcap capture of HCI events, at recorded speed or as fast as possible."""

    thread_prefix = "ble"

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, on_packet: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None], *, speed: float = 1.0, repeat: bool = False) -> None:
        super().__init__(path, _hci_records, loop, on_packet, on_state, speed=speed, repeat=repeat)


def _hci_records(f: BinaryIO) -> Iterator[tuple[float, bytes]]:
    return ((p.ts, p.h4) for p in read_capture(f))


class HciSource(AdvertSource):
    """Scans on a local adapter through scapy's BluetoothHCISocket; recovers when the adapter comes back."""

    def __init__(self, adapter: str, loop: asyncio.AbstractEventLoop, on_packet: Callable[[float, bytes], None],
                 on_state: Callable[[str, str | None], None]) -> None:
        super().__init__(loop, on_packet, on_state)
        self.adapter = adapter
        if not adapter.startswith("hci") or not adapter[3:].isdigit():
            raise ValueError(f"adapter must look like hci0, got {adapter!r}")
        self.dev = int(adapter[3:])

    def _run(self) -> None:
        backoff = Backoff(1.0, 30.0)
        last: str | None = None
        while not self._stop.is_set():
            try:
                self._scan()
                backoff.reset()
            except Exception as exc:  # the adapter vanished, reset, or we lack permission: say what, retry
                reason = _explain(exc, self.adapter)
                if reason != last:  # one log line and one state change per distinct problem
                    log.warning("ble: %s", reason)
                    last = reason
                    self._state("unavailable", reason)
            if self._stop.wait(backoff.next()):
                return

    def _scan(self) -> None:
        from scapy.layers.bluetooth import (
            BluetoothHCISocket,  # heavy: only when BLE scanning really starts
        )

        sock = BluetoothHCISocket(self.dev)  # type: ignore[no-untyped-call]
        try:
            for ocf, params in ((OCF_SET_SCAN_ENABLE, SCAN_DISABLE), (OCF_SET_SCAN_PARAMETERS, SCAN_PARAMETERS),
                                (OCF_SET_SCAN_ENABLE, SCAN_ENABLE)):
                opcode = (OGF_LE << 10) | ocf
                sock.ins.send(bytes((0x01,)) + opcode.to_bytes(2, "little") + bytes((len(params),)) + params)
            self._state("ok")
            sock.ins.settimeout(0.5)
            while not self._stop.is_set():
                try:
                    data = sock.ins.recv(1024)
                except TimeoutError:
                    continue
                if data:
                    self._deliver(time.time(), bytes(data))
        finally:
            with contextlib.suppress(OSError):
                sock.close()


def _explain(exc: BaseException, adapter: str) -> str:
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EPERM, errno.EACCES):
        return (f"no permission to scan on {adapter}: the service needs CAP_NET_RAW and CAP_NET_ADMIN "
                "(AmbientCapabilities in systemd/o2o-edge.service)")
    if getattr(exc, "errno", None) in (errno.ENODEV, errno.ENXIO, errno.EADDRNOTAVAIL):
        return f"adapter {adapter} not found or down (check `hciconfig {adapter}` / `bluetoothctl show`)"
    if getattr(exc, "errno", None) == errno.EAFNOSUPPORT:
        return "this kernel has no Bluetooth support (AF_BLUETOOTH)"
    if isinstance(exc, AttributeError) and "AF_BLUETOOTH" in str(exc):
        return ("this Python was built without Bluetooth sockets (AF_BLUETOOTH): "
                "run o2o-edge on Debian's python3, which has them")
    if isinstance(exc, ImportError):
        return f"scapy's Bluetooth layer is unavailable: {exc}"
    return f"{adapter}: {type(exc).__name__}: {exc}"


def make_source(source: str, loop: asyncio.AbstractEventLoop, on_packet: Callable[[float, bytes], None],
                on_state: Callable[[str, str | None], None]) -> ThreadSource:
    if source.startswith("replay:"):
        # replay:PATH[?fast][&loop]  fast: no delays (capture time drives the tracker); loop: start over at the end
        spec, _, query = source[len("replay:"):].partition("?")
        options = set(query.split("&")) if query else set()
        return ReplaySource(Path(spec), loop, on_packet, on_state, speed=0 if "fast" in options else 1.0,
                            repeat="loop" in options)
    return HciSource(source, loop, on_packet, on_state)
