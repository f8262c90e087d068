"""125 kHz EM4100 readers that print each card as ASCII (RDM6300, ID-12LA / ID-20LA, Seeed UART module).

Frame: STX (0x02), 10 ASCII hex digits of data (a version/customer byte and
the 32-bit card number), 2 ASCII hex digits of checksum (the XOR of the five
data bytes), then ETX (0x03). ID Innovations' ID-12LA puts CR LF before the
ETX; the RDM6300 does not. Both are accepted. The reader only speaks: there
are no commands, so a card's UID is reported as a tag on antenna 1.
"""

from __future__ import annotations

from functools import reduce
from typing import Final

from drivers.rfid.base import (
    NEED_DATA,
    FrameError,
    NeedData,
    ReaderEmulator,
    ReaderEvent,
    ReaderSession,
    TagReport,
)

__all__ = ["Emulator", "Session", "encode_frame"]

STX: Final = 0x02
ETX: Final = 0x03
# STX + 10 data + 2 checksum + CR LF + ETX: the longest frame (ID-12LA).
MAX_FRAME: Final = 16
_HEX: Final = frozenset(b"0123456789ABCDEFabcdef")


def checksum(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


def encode_frame(uid: bytes, *, crlf: bool = False) -> bytes:
    """The frame a reader prints for a 5-byte card UID (crlf=True: ID-12LA style)."""
    if len(uid) != 5:
        raise ValueError("an EM4100 UID is 5 bytes")
    text = uid.hex().upper() + f"{checksum(uid):02X}"
    return bytes((STX,)) + text.encode() + (b"\r\n" if crlf else b"") + bytes((ETX,))


def _decode(buf: bytearray) -> ReaderEvent | NeedData:
    start = buf.find(STX)
    if start < 0:
        n = len(buf)
        buf.clear()
        return FrameError("no STX", n) if n else NEED_DATA
    if start:
        del buf[:start]
        return FrameError("garbage before STX", start)
    end = buf.find(ETX, 1, MAX_FRAME)
    if end < 0:
        if len(buf) >= MAX_FRAME:
            del buf[:1]  # no ETX where one must be: resynchronise on the next STX
            return FrameError("no ETX within 16 bytes", 1)
        return NEED_DATA
    body = bytes(buf[1:end])
    if body.endswith(b"\r\n"):
        body = body[:-2]
    if len(body) != 12 or not set(body) <= _HEX:
        del buf[:1]
        return FrameError("not 12 hex digits between STX and ETX", 1)
    raw = bytes.fromhex(body.decode())
    if checksum(raw[:5]) != raw[5]:
        del buf[:1]
        return FrameError("bad checksum", 1)
    del buf[: end + 1]
    return TagReport(raw[:5])


class Session(ReaderSession):
    protocol = "em4100"
    answers_start = False  # nothing to ask: the reader is online as soon as its port is open

    @property
    def polled(self) -> bool:
        return False

    def start(self) -> None:
        """Nothing to send: these readers only print cards."""

    def _next_event(self) -> ReaderEvent | NeedData:
        return _decode(self._rx.data)


class Emulator(ReaderEmulator):
    """An RDM6300: prints each card in its field every period (ID-12LA style with crlf=True)."""

    protocol = "em4100"

    def __init__(self, *, address: int = 0, crlf: bool = False) -> None:
        super().__init__(address=address)
        self.crlf = crlf

    def _answer_commands(self) -> None:
        self._rx.data.clear()  # the reader has no commands

    def _stream(self) -> None:
        for tag in self.field:
            # Demo fields hold UHF EPCs; a 125 kHz card has a 5-byte UID: use the EPC's last five bytes.
            self._send(encode_frame(tag.epc[-5:].rjust(5, b"\x00"), crlf=self.crlf))
