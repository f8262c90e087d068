"""What every RFID reader codec shares: the values it yields and the two session roles.

A codec is sans-IO (h11's shape): bytes go in with `receive_data`, values
come out of `next_event` (a `TagReport`, a `ReaderReply`, a `FrameError`, or
`NEED_DATA`), and bytes to write come out of `data_to_send`. It has no
clock, no logging, no thread and no import from `agent/`.

Unlike h11's terminal ERROR state, a serial line goes on after a bad frame:
the codec skips to the next plausible start, returns a `FrameError` saying
how many bytes it discarded and why, and carries on.

Each protocol module has two sides:
  * a host `Session`: what the agent runs (boot sequence, polling, decoding);
  * a device `Emulator`: what the simulator runs, speaking the same bytes.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

__all__ = [
    "MAX_BUFFER",
    "NEED_DATA",
    "FrameBuffer",
    "FrameError",
    "NeedData",
    "ReaderEmulator",
    "ReaderEvent",
    "ReaderReply",
    "ReaderSession",
    "TagReport",
]

# No supported protocol has a frame anywhere near this long; a buffer this full is garbage.
MAX_BUFFER: Final = 4096


class NeedData:
    """Sentinel: feed more bytes before the next event can be decoded."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class TagReport:
    """One read of one tag: its EPC (or UID for 125 kHz cards), the antenna, RSSI in dBm when reported."""

    epc: bytes
    antenna: int = 1
    rssi: int | None = None


@dataclass(frozen=True, slots=True)
class ReaderReply:
    """A decoded answer that is not a tag: proof of life, or a failure the reader reports."""

    command: int
    status: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes the codec discarded, and why (bad checksum, bad length, garbage, overflow)."""

    reason: str
    discarded: int


ReaderEvent = TagReport | ReaderReply | FrameError


class FrameBuffer:
    """The receive buffer. Bounded the way h11 bounds max_incomplete_event_size: what is still
    waiting after every complete frame was taken must be shorter than `limit` (unlike
    pyserial's Packetizer, which grows without end)."""

    __slots__ = ("_buf", "limit")

    def __init__(self, limit: int = MAX_BUFFER) -> None:
        self._buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def data(self) -> bytearray:
        return self._buf

    def __len__(self) -> int:
        return len(self._buf)


class _Codec(abc.ABC):
    def __init__(self) -> None:
        self._rx = FrameBuffer()
        self._tx = bytearray()
        # Events decoded ahead (one frame can carry several tags); next_event() returns these first.
        self._ready: deque[ReaderEvent] = deque()
        self._idle = False

    def receive_data(self, data: bytes) -> None:
        self._rx.feed(data)
        self._idle = False

    def line_idle(self) -> None:
        """The caller saw no byte for a while: a partial frame still buffered will never complete.

        The codec has no clock, so the transport says when the line went quiet (the UHFReader18
        manual: more than 15 ms between two bytes of a frame means synchronisation is lost).
        A length byte corrupted into a large value would otherwise hold back good frames.
        """
        self._idle = True

    def data_to_send(self) -> bytes:
        out = bytes(self._tx)
        self._tx.clear()
        return out

    def _send(self, frame: bytes) -> None:
        self._tx += frame

    def next_event(self) -> ReaderEvent | NeedData:
        if self._ready:
            return self._ready.popleft()
        event = self._next_event()
        if event is NEED_DATA and len(self._rx) > self._rx.limit:
            # No frame of any supported protocol is this long: what is left is garbage.
            n = len(self._rx)
            self._rx.data.clear()
            return FrameError("receive buffer overflow", n)
        if event is NEED_DATA and self._idle and len(self._rx):
            # Drop one byte and look again: the rest may hold a complete frame after all.
            self._rx.data[:1] = b""
            return FrameError("incomplete frame when the line went idle", 1)
        return event

    @abc.abstractmethod
    def _next_event(self) -> ReaderEvent | NeedData: ...


class ReaderSession(_Codec):
    """The host side of one reader connection."""

    protocol: ClassVar[str]
    #: Whether the reader answers the start sequence, so an answer proves the link.
    answers_start: ClassVar[bool] = True

    def __init__(
        self,
        *,
        address: int = 0,
        mode: Literal["auto", "active", "polled"] = "auto",
        antennas: Sequence[int] = (1,),
        region: str | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.mode = mode
        self.antennas = tuple(antennas) or (1,)
        self.region = region

    @property
    def polled(self) -> bool:
        """Whether the host must call `poll()` periodically to get tag reports."""
        return self.mode == "polled"

    @abc.abstractmethod
    def start(self) -> None:
        """Queue the commands a freshly opened reader needs before it reports tags."""

    def poll(self) -> None:
        """Queue one inventory request (polled mode)."""

    def pause(self) -> None:
        """Queue what stops the reader streaming (it is resumed with `start`)."""

    def response_timeout(self) -> None:
        """The caller waited too long for an answer: forget it, so the next poll() is not held back."""


class ReaderEmulator(_Codec):
    """The device side, for simulators: answers commands and reports the tags in its field."""

    protocol: ClassVar[str]

    def __init__(self, *, address: int = 0) -> None:
        super().__init__()
        self.address = address
        self.field: Sequence[TagReport] = ()

    def _next_event(self) -> ReaderEvent | NeedData:  # emulators consume commands in tick()
        return NEED_DATA

    def tick(self, field: Sequence[TagReport] | None) -> None:
        """Answer received commands; with a new `field` (once per period), stream reports if streaming."""
        if field is not None:
            self.field = field
        self._answer_commands()
        if field is not None:
            self._stream()

    @abc.abstractmethod
    def _answer_commands(self) -> None:
        """Decode what the host sent and queue the answers (inventory answers use `self.field`)."""

    @abc.abstractmethod
    def _stream(self) -> None:
        """Queue unsolicited reports for `self.field` if the reader is in a streaming mode."""
