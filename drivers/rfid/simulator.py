"""Simulated readers: a protocol emulator speaking the real bytes through a pseudo-terminal.

The agent opens the pty's slave side with pyserial exactly as it opens
/dev/ttyUSB0, so the demo and the tests exercise the real serial code path.
A stable symlink stands for the device node, so "unplug" (close the pty,
remove the link) and "replug" (a new pty behind the same link) behave like
a USB adapter handled by udev.

A scenario says which tags are in the field of which antenna at a given
moment; the emulator turns that into the protocol's tag reports.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from drivers.rfid import emulator_class
from drivers.rfid.base import NEED_DATA, ReaderEmulator, ReaderEvent, ReaderSession, TagReport
from drivers.rfid.epc import encode_sgtin96, gtin_check_digit

__all__ = [
    "DEMO_PRODUCTS",
    "ManualScenario",
    "PtySimulator",
    "Scenario",
    "ShopfloorScenario",
    "converse",
    "demo_epc",
    "start_demo_simulator",
]


def converse(session: ReaderSession, emulator: ReaderEmulator, rounds: int = 30) -> list[ReaderEvent]:
    """Let a host session and a device emulator talk, without a line in between, until neither has more
    to say; the events the session decoded. (Tests and the benchmarks bring readers up with it.)"""
    events: list[ReaderEvent] = []
    for _ in range(rounds):
        emulator.receive_data(session.data_to_send())
        emulator.tick(None)
        out = emulator.data_to_send()
        if not out:
            break
        session.receive_data(out)
        while (event := session.next_event()) is not NEED_DATA:
            events.append(event)  # type: ignore[arg-type]
    return events


class Scenario(Protocol):
    def field(self, now: float) -> Sequence[TagReport]: ...


class ManualScenario:
    """Tags placed and removed by hand (tests): thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tags: dict[bytes, TagReport] = {}

    def put(self, epc: bytes, antenna: int = 1, rssi: int | None = -55) -> None:
        with self._lock:
            self._tags[epc] = TagReport(epc, antenna, rssi)

    def remove(self, epc: bytes) -> None:
        with self._lock:
            self._tags.pop(epc, None)

    def clear(self) -> None:
        with self._lock:
            self._tags.clear()

    def field(self, now: float) -> Sequence[TagReport]:
        with self._lock:
            return list(self._tags.values())


# Demo catalogue: company prefix 3012345 (7 digits), made-up items. (name, GTIN-13 body without check digit)
DEMO_PRODUCTS = [
    ("Trail running shoe", "0301234500011"),
    ("Merino T-shirt", "0301234500028"),
    ("Rain jacket", "0301234500035"),
    ("Water bottle", "0301234500042"),
    ("Hiking socks", "0301234500059"),
    ("Cap", "0301234500066"),
]


def demo_epc(product: int, serial: int) -> bytes:
    body = DEMO_PRODUCTS[product % len(DEMO_PRODUCTS)][1]
    return encode_sgtin96(body + str(gtin_check_digit(body)), serial, filter=1, company_prefix_digits=7)


class ShopfloorScenario:
    """Items wandering between antennas and out of range, deterministic for a seed."""

    def __init__(self, tags: int = 12, antennas: Sequence[int] = (1, 2), seed: int = 1, step_s: float = 4.0) -> None:
        self._rng = random.Random(seed)
        self._antennas = list(antennas)
        self._step_s = step_s
        self._next = 0.0
        self._items = [demo_epc(i, 1000 + i) for i in range(tags)]
        self._where: dict[bytes, int | None] = dict.fromkeys(self._items)

    def field(self, now: float) -> Sequence[TagReport]:
        if now >= self._next:
            self._next = now + self._step_s
            for epc in self._rng.sample(self._items, k=max(1, len(self._items) // 4)):
                self._where[epc] = self._rng.choice([*self._antennas, None])
        out = []
        for epc, antenna in self._where.items():
            if antenna is not None and self._rng.random() > 0.1:  # a real reader misses a read now and then
                out.append(TagReport(epc, antenna, -45 - self._rng.randrange(30)))
        return out


class PtySimulator:
    """A reader emulator on a pty, behind a stable symlink; `start()` returns the path to open."""

    def __init__(
        self,
        protocol: str,
        scenario: Scenario,
        *,
        link: str | Path,
        period_s: float = 0.1,
        address: int = 0,
        emulator: ReaderEmulator | None = None,
    ) -> None:
        self.protocol = protocol
        self.scenario = scenario
        self.link = Path(link)
        self.period_s = period_s
        self._address = address
        self._emulator_override = emulator
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.emulator: ReaderEmulator | None = None
        self.bytes_written = 0
        self.received = bytearray()  # everything the host sent, for tests (bounded below)
        self.garbage: list[bytes] = []  # bytes to inject before the next tick (tests of resync)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def start(self) -> str:
        self.plug()
        return str(self.link)

    def plug(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
        tty.setraw(master)
        self._master, self._slave = master, slave
        self.emulator = self._emulator_override or emulator_class(self.protocol)(address=self._address)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.link.name}", daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        """Like pulling the USB adapter: the device node disappears and reads on it fail."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self.link.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    stop = unplug

    def inject(self, data: bytes) -> None:
        self.garbage.append(data)

    def _run(self) -> None:
        master = self._master
        emulator = self.emulator
        assert master is not None and emulator is not None
        next_tick = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                ready, _, _ = select.select([master], [], [], timeout)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                emulator.receive_data(data)
                if len(self.received) < 1 << 20:
                    self.received += data
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.period_s
                emulator.tick(self.scenario.field(now))
            else:
                emulator.tick(None)
            out = emulator.data_to_send()
            while self.garbage:
                out = self.garbage.pop(0) + out
            if out:
                try:
                    os.write(master, out)
                    self.bytes_written += len(out)
                except OSError:
                    return


def start_demo_simulator(*, reader_id: str, protocol: str, antennas: Sequence[int], scenario: str, tags: int,
                         period_s: float, address: int, directory: Path) -> tuple[PtySimulator, str]:
    """`o2o-edge run --demo`: an emulator on a pty behind `directory/reader_id`; (simulator, port to open)."""
    chosen: Scenario
    if scenario == "idle":
        chosen = ManualScenario()
    else:
        chosen = ShopfloorScenario(tags=tags, antennas=list(antennas) or [1], seed=zlib.crc32(reader_id.encode()) & 0xFFFF)
    sim = PtySimulator(protocol, chosen, link=directory / reader_id, period_s=period_s, address=address)
    return sim, sim.start()
