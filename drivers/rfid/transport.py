"""The only code that opens a serial port: one thread per reader, values handed to the event loop.

Any pyserial URL works as the port (a device path, `socket://`, `loop://`,
`rfc2217://`), so a reader behind a serial-over-IP box needs no new code.
The thread owns the port: it opens it (retrying with exponential backoff
while it is missing), reads whatever arrives, writes what the loop asked
for, and reports every open and every loss through `on_state`. Port errors
are reported as text; the codec never sees them (pyserial ReaderThread's
split between port errors and protocol errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import serial

from drivers.backoff import Backoff

__all__ = ["PortState", "SerialTransport", "describe_error", "open_port", "probe_port"]

log = logging.getLogger(__name__)

# A read returns at least this often so the thread can write and notice stop().
_READ_TIMEOUT_S = 0.02
# A port that stayed open this long counts as working: its next failure restarts the backoff.
_STABLE_S = 5.0
# Bytes waiting for the loop; a stalled loop must not let a chatty reader eat the gateway's memory.
MAX_PENDING_BYTES = 1 << 20
# No byte for this long after some arrived: the line went quiet and a partial frame will not complete.
# The UHFReader18 manual allows 15 ms between two bytes of a frame; a pty or USB adapter adds jitter.
LINE_IDLE_S = 0.05


@dataclass(frozen=True, slots=True)
class PortState:
    open: bool
    error: str | None = None


class SerialTransport:
    """Reads and writes one serial port on a thread; hands bytes and state changes to `loop`."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes], None],
        on_state: Callable[[PortState], None],
        on_idle: Callable[[], None] | None = None,
        backoff: Backoff | None = None,
        name: str = "serial",
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self._loop = loop
        self._on_data = on_data
        self._on_state = on_state
        self._on_idle = on_idle
        self._backoff = backoff or Backoff(0.5, 30.0, jitter=0.2, stable_s=_STABLE_S)
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: deque[bytes] = deque()
        self._in: deque[bytes | None] = deque()  # None: the line went quiet after the bytes before it
        self._in_bytes = 0
        self._in_lock = threading.Lock()
        self._drain_scheduled = False
        self.overruns = 0  # bytes dropped because the loop fell behind
        self.last_rx = 0.0  # time.monotonic() of the last byte read from the port (set on the thread)
        self.opens = 0
        self.bytes_in = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rfid-{self._name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: serial thread did not stop within %.1fs", self._name, timeout)

    def write(self, data: bytes) -> None:
        """Queue bytes for the port (thread-safe); written on the next turn of the thread."""
        if data:
            self._out.append(data)

    # -- thread side -------------------------------------------------------------------------

    def _report(self, state: PortState) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_state, state)

    def _run(self) -> None:
        last_error: str | None = None
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=_READ_TIMEOUT_S, write_timeout=1.0, exclusive=True
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                error = describe_error(exc)
                if error != last_error:
                    self._report(PortState(False, error))
                    last_error = error
                self._stop.wait(self._backoff.next())
                continue
            self.opens += 1
            opened_at = time.monotonic()
            self._out.clear()  # commands queued for a previous connection are stale
            self._report(PortState(True))
            try:
                self._pump(port)
                last_error = None
            except (serial.SerialException, OSError) as exc:
                self._backoff.succeeded(time.monotonic() - opened_at)  # worked a while: retry quickly
                last_error = describe_error(exc)
                self._report(PortState(False, last_error))
            finally:
                with contextlib.suppress(serial.SerialException, OSError):
                    port.close()
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next())
        self._report(PortState(False, "stopped"))

    def _pump(self, port: serial.SerialBase) -> None:
        quiet = True  # no byte since the line was last reported quiet
        while not self._stop.is_set():
            while self._out:
                port.write(self._out.popleft())
            waiting = port.in_waiting
            data = port.read(waiting if waiting > 0 else 1)
            if data:
                quiet = False
                self._hand_over(data)
            elif not quiet and time.monotonic() - self.last_rx >= LINE_IDLE_S:
                # Only this thread can tell: an empty read means the port had nothing for a whole read
                # timeout. The loop cannot judge from the clock: a thread kept from the GIL between the
                # first byte of a frame and the rest looks like a quiet line from there.
                quiet = True
                if self._on_idle is not None:
                    self._hand_over(None)

    @property
    def pending(self) -> int:
        """Bytes read from the port that the loop has not taken yet."""
        return self._in_bytes

    def _hand_over(self, data: bytes | None) -> None:
        with self._in_lock:
            if data is not None:
                self.bytes_in += len(data)
                self.last_rx = time.monotonic()
                if self._in_bytes + len(data) > MAX_PENDING_BYTES:
                    self.overruns += len(data)
                    return
                self._in_bytes += len(data)
            elif self._in and self._in[-1] is None:
                return  # one quiet mark is enough: the queue stays bounded by the bytes in it
            self._in.append(data)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain)

    # -- loop side ---------------------------------------------------------------------------

    def _drain(self) -> None:
        with self._in_lock:
            chunks = list(self._in)
            self._in.clear()
            self._in_bytes = 0
            self._drain_scheduled = False
        run: list[bytes] = []
        for chunk in chunks:
            if chunk is not None:
                run.append(chunk)
                continue
            if run:
                self._on_data(b"".join(run))
                run.clear()
            if self._on_idle is not None:
                self._on_idle()
        if run:
            self._on_data(b"".join(run))


def describe_error(exc: BaseException) -> str:
    """A short reason for staff and logs: 'No such file or directory: /dev/ttyUSB0', not a traceback."""
    errno_exc = exc if isinstance(exc, OSError) else exc.__context__
    if isinstance(errno_exc, OSError) and errno_exc.strerror:
        where = f": {errno_exc.filename}" if errno_exc.filename else ""
        return f"{errno_exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def open_port(url: str, *, baudrate: int, timeout: float = 1.0) -> serial.SerialBase:
    """Open a port for a short job (an alarm relay's pulse); the caller closes it. Raises SerialException/OSError."""
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=timeout)


def probe_port(url: str, baudrate: int) -> str | None:
    """Open and close a port once (before a config push moves a reader there); why it fails, or None."""
    try:
        serial.serial_for_url(url, baudrate=baudrate, timeout=0.1, exclusive=True).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        return describe_error(exc)
    return None
