"""The "BB … 7E" UHF module family: the MagicRF M100 / QM100 host protocol (JRD-4035 in M5Stack's UHF
unit, YRM100, "R200" boards). The config id is `r2000` as in the design brief; Impinj R2000 boards
proper speak another frame (0xA0 head + LRC) and would need a codec of their own.

Frame: header 0xBB, Type (0x00 command, 0x01 response, 0x02 notice), Command,
PL (payload length, 2 bytes big-endian), payload, Checksum (the low byte of
the sum of Type .. last payload byte), end 0x7E.

A polled inventory is command 0x22 (single poll); the module answers with one
notice (Type 0x02, Command 0x22) per tag: RSSI (signed dBm), PC (2 bytes), EPC
(PC >> 11 words), EPC CRC (2 bytes); or, with no tag, the error response
(Command 0xFF) with code 0x15. Multi-poll is 0x27 (0x22 + a 16-bit count),
stopped by 0x28. Command 0x03 with 0x00 asks the hardware version.
These modules have one antenna.
"""

from __future__ import annotations

from typing import Final

from drivers.rfid.base import (
    NEED_DATA,
    FrameError,
    NeedData,
    ReaderEmulator,
    ReaderEvent,
    ReaderReply,
    ReaderSession,
    TagReport,
)

__all__ = ["Emulator", "Session", "build_frame", "checksum", "parse_tag_notice", "tag_notice"]

HEADER: Final = 0xBB
END: Final = 0x7E
TYPE_COMMAND, TYPE_RESPONSE, TYPE_NOTICE = 0x00, 0x01, 0x02
CMD_INFO: Final = 0x03
CMD_SINGLE_POLL: Final = 0x22
CMD_MULTI_POLL: Final = 0x27
CMD_STOP: Final = 0x28
CMD_ERROR: Final = 0xFF
ERR_NO_TAG: Final = 0x15
# No frame of this family carries more than a few dozen payload bytes; a bigger PL is corruption.
MAX_PAYLOAD: Final = 512


def checksum(body: bytes | bytearray | memoryview) -> int:
    return sum(body) & 0xFF


def build_frame(ftype: int, command: int, payload: bytes = b"") -> bytes:
    body = bytes((ftype, command)) + len(payload).to_bytes(2, "big") + payload
    return bytes((HEADER,)) + body + bytes((checksum(body), END))


def _scan(buf: bytearray) -> FrameError | NeedData | tuple[int, int, bytes]:
    start = buf.find(HEADER)
    if start < 0:
        n = len(buf)
        buf.clear()
        return FrameError("no frame header", n) if n else NEED_DATA
    if start:
        del buf[:start]
        return FrameError("garbage before frame header", start)
    if len(buf) < 5:
        return NEED_DATA
    if buf[1] > TYPE_NOTICE:
        del buf[:1]
        return FrameError(f"unknown frame type 0x{buf[0]:02X}", 1)
    length = int.from_bytes(buf[3:5], "big")
    if length > MAX_PAYLOAD:
        del buf[:1]
        return FrameError(f"payload length {length} out of range", 1)
    total = length + 7
    if len(buf) < total:
        return NEED_DATA
    if buf[total - 1] != END:
        del buf[:1]
        return FrameError("no end byte 0x7E", 1)
    if checksum(memoryview(buf)[1 : total - 2]) != buf[total - 2]:
        del buf[:1]
        return FrameError("bad checksum", 1)
    ftype, command, payload = buf[1], buf[2], bytes(buf[5 : total - 2])
    del buf[:total]
    return ftype, command, payload


def parse_tag_notice(payload: bytes) -> TagReport:
    """RSSI, PC, EPC (PC >> 11 words), EPC CRC; raises ValueError when the lengths disagree."""
    if len(payload) < 5:
        raise ValueError("tag notice too short")
    rssi = payload[0] - 256 if payload[0] > 127 else payload[0]
    words = int.from_bytes(payload[1:3], "big") >> 11
    if 3 + 2 * words + 2 != len(payload):
        raise ValueError(f"PC says {words} EPC words, payload holds {(len(payload) - 5) / 2:g}")
    return TagReport(payload[3 : 3 + 2 * words], 1, rssi)


class Session(ReaderSession):
    """Host side. mode "auto"/"polled": single poll per poll interval; "active": multi-poll streaming."""

    protocol = "r2000"

    @property
    def polled(self) -> bool:
        return self.mode != "active"

    def start(self) -> None:
        self._send(build_frame(TYPE_COMMAND, CMD_STOP))  # in case a previous run left it multi-polling
        self._send(build_frame(TYPE_COMMAND, CMD_INFO, b"\x00"))
        if not self.polled:
            self._send(build_frame(TYPE_COMMAND, CMD_MULTI_POLL, b"\x22\xff\xff"))

    def pause(self) -> None:
        if not self.polled:
            self._send(build_frame(TYPE_COMMAND, CMD_STOP))

    def poll(self) -> None:
        self._send(build_frame(TYPE_COMMAND, CMD_SINGLE_POLL))

    def _next_event(self) -> ReaderEvent | NeedData:
        found = _scan(self._rx.data)
        if not isinstance(found, tuple):
            return found
        ftype, command, payload = found
        if ftype == TYPE_NOTICE and command == CMD_SINGLE_POLL:
            try:
                return parse_tag_notice(payload)
            except ValueError as exc:
                return FrameError(f"malformed tag notice: {exc}", 0)
        if command == CMD_ERROR:
            code = payload[0] if payload else -1
            return ReaderReply(command, code, code == ERR_NO_TAG, "no tag" if code == ERR_NO_TAG else f"error 0x{code:02X}")
        detail = payload[1:].decode("ascii", "replace") if command == CMD_INFO and payload else ""
        return ReaderReply(command, payload[0] if payload else 0, True, detail)


class Emulator(ReaderEmulator):
    """Device side: an M100 module."""

    protocol = "r2000"
    INFO = b"\x00M100 26dBm V1.0"

    def __init__(self, *, address: int = 0) -> None:
        super().__init__(address=address)
        self.multi_poll = False
        self.commands: list[int] = []

    def _answer_commands(self) -> None:
        while True:
            found = _scan(self._rx.data)
            if isinstance(found, NeedData):
                return
            if isinstance(found, FrameError):
                continue
            ftype, command, _ = found
            if ftype != TYPE_COMMAND:
                continue
            self.commands.append(command)
            if command == CMD_INFO:
                self._send(build_frame(TYPE_RESPONSE, CMD_INFO, self.INFO))
            elif command == CMD_SINGLE_POLL:
                self._notices()
            elif command == CMD_MULTI_POLL:
                self.multi_poll = True
            elif command == CMD_STOP:
                self.multi_poll = False
                self._send(build_frame(TYPE_RESPONSE, CMD_STOP, b"\x00"))
            else:
                self._send(build_frame(TYPE_RESPONSE, CMD_ERROR, b"\x17"))  # command error

    def _notices(self) -> None:
        if not self.field:
            self._send(build_frame(TYPE_RESPONSE, CMD_ERROR, bytes((ERR_NO_TAG,))))
        for tag in self.field:
            self._send(tag_notice(tag))

    def _stream(self) -> None:
        if self.multi_poll:
            self._notices()


def tag_notice(tag: TagReport) -> bytes:
    from drivers.rfid.mercury import gen2_crc

    words = (len(tag.epc) + 1) // 2
    epc = tag.epc.ljust(words * 2, b"\x00")
    pc = (words << 11).to_bytes(2, "big")
    rssi = (tag.rssi if tag.rssi is not None else -60) & 0xFF
    return build_frame(TYPE_NOTICE, CMD_SINGLE_POLL, bytes((rssi,)) + pc + epc + gen2_crc(pc + epc).to_bytes(2, "big"))
