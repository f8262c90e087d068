"""ThingMagic / JADAK Mercury embedded-module serial protocol (M6e, M6e Nano, Micro).

Sources (see tests/drivers/rfid/test_mercury.py for the captured frames):
  * ThingMagic MercuryAPI 1.35.1.43, c/src/api/serial_reader_l3.c (tm_crc,
    TMR_SR_sendMessage, TMR_SR_receiveMessage, TMR_SR_parseMetadataFromMessage)
    and serial_reader.c (TMR_SR_boot, TMR_SR_hasMoreTags, TMR_SR_getNextTag);
  * SparkFun Simultaneous RFID Tag Reader library (RFID::startReading,
    RFID::stopReading, RFID::parseResponse) and the URA communication logs
    it shipped in 2016.

Frames, multi-byte fields big-endian:
  host -> module   FF LEN OP DATA[LEN] CRChi CRClo            (LEN + 5 bytes)
  module -> host   FF LEN OP STATUS(2) DATA[LEN] CRChi CRClo  (LEN + 7 bytes)
The CRC covers everything after the FF header. It is ThingMagic's own
nibble-table CRC (init 0xFFFF, poly 0x1021 shifted in at the low end),
which is *not* CRC-16/CCITT-FALSE.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
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

__all__ = ["Emulator", "Session", "build_command", "build_response", "tm_crc"]

HEADER: Final = 0xFF
# Response DATA is at most 248 bytes (the M6e user guide; TMR_SR_receiveMessage rejects LEN > 0xF8).
MAX_RESPONSE_DATA: Final = 0xF8

# Opcodes (MercuryAPI serial_reader_imp.h TMR_SR_OpCode).
OP_VERSION: Final = 0x03
OP_BOOT_FIRMWARE: Final = 0x04
OP_SET_BAUD: Final = 0x06
OP_GET_PROGRAM: Final = 0x0C
OP_READ_TAG_MULTIPLE: Final = 0x22
OP_GET_TAG_BUFFER: Final = 0x29
OP_CLEAR_TAG_BUFFER: Final = 0x2A
OP_MULTI_PROTOCOL: Final = 0x2F
OP_SET_ANTENNA: Final = 0x91
OP_SET_READ_POWER: Final = 0x92
OP_SET_PROTOCOL: Final = 0x93
OP_SET_REGION: Final = 0x97
OP_SET_READER_CONFIG: Final = 0x9A

STATUS_OK: Final = 0x0000
STATUS_INVALID_OPCODE: Final = 0x0101
STATUS_NO_TAGS_FOUND: Final = 0x0400  # also the end-of-cycle keep-alive while streaming

PROTOCOL_GEN2: Final = 0x05
# tmr_region.h
REGIONS: Final = {"na": 0x01, "eu": 0x02, "in": 0x04, "jp": 0x05, "prc": 0x06, "eu3": 0x08, "kr2": 0x09,
                  "au": 0x0B, "nz": 0x0C, "na2": 0x0D}

# Metadata flags (tmr_tag_data.h TMR_TRD_MetadataFlag) and the bytes each adds to a record.
MD_READCOUNT, MD_RSSI, MD_ANTENNA, MD_FREQUENCY = 0x0001, 0x0002, 0x0004, 0x0008
MD_TIMESTAMP, MD_PHASE, MD_PROTOCOL, MD_DATA, MD_GPIO = 0x0010, 0x0020, 0x0040, 0x0080, 0x0100
MD_GEN2_Q, MD_GEN2_LF, MD_GEN2_TARGET = 0x0200, 0x0400, 0x0800
# What we ask for: the same set as SparkFun's start blob (read count, RSSI, antenna, … GPIO).
METADATA_FLAGS: Final = 0x01FF

# RFID::startReading: 0x2F, timeout 0, option 1 (continuous), embedded 0x22 with
# option 0x10 (metadata), search flags 0x001B, cycle 1000 ms, metadata 0x01FF.
START_READING_DATA: Final = bytes.fromhex("00000122000005072210001B03E801FF")
STOP_READING_DATA: Final = bytes.fromhex("000002")
DISABLE_READ_FILTER_DATA: Final = bytes.fromhex("010C00")

_CRCTABLE: Final = (
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
)


def tm_crc(data: bytes | bytearray | memoryview) -> int:
    """MercuryAPI serial_reader_l3.c tm_crc(): "ThingMagic-mutated CRC ... not a CCITT CRC-16"."""
    crc = 0xFFFF
    table = _CRCTABLE
    for b in data:
        crc = (((crc << 4) | (b >> 4)) ^ table[crc >> 12]) & 0xFFFF
        crc = (((crc << 4) | (b & 0x0F)) ^ table[crc >> 12]) & 0xFFFF
    return crc


def build_command(opcode: int, data: bytes = b"") -> bytes:
    if len(data) > 250:
        raise ValueError("command data is at most 250 bytes")
    body = bytes((len(data), opcode)) + data
    return bytes((HEADER,)) + body + tm_crc(body).to_bytes(2, "big")


def build_response(opcode: int, status: int = STATUS_OK, data: bytes = b"") -> bytes:
    if len(data) > MAX_RESPONSE_DATA:
        raise ValueError("response data is at most 248 bytes")
    body = bytes((len(data), opcode)) + status.to_bytes(2, "big") + data
    return bytes((HEADER,)) + body + tm_crc(body).to_bytes(2, "big")


def gen2_crc(data: bytes) -> int:
    """The EPC CRC a Gen2 tag backscatters (CRC-16/GENIBUS over PC + EPC)."""
    return binascii.crc_hqx(data, 0xFFFF) ^ 0xFFFF


def _scan(buf: bytearray, overhead: int, max_len: int) -> FrameError | NeedData | tuple[int, int, bytes]:
    """Find the next frame in `buf`; returns (consumed, opcode, payload-with-status) or an error."""
    start = buf.find(HEADER)
    if start < 0:
        n = len(buf)
        buf.clear()
        return FrameError("no frame header", n) if n else NEED_DATA
    if start > 0:
        del buf[:start]
        return FrameError("garbage before frame header", start)
    if len(buf) < 2:
        return NEED_DATA
    length = buf[1]
    if length > max_len:
        del buf[:1]
        return FrameError(f"length {length} out of range", 1)
    total = length + overhead
    if len(buf) < total:
        return NEED_DATA
    crc = tm_crc(memoryview(buf)[1 : total - 2])
    if crc != int.from_bytes(buf[total - 2 : total], "big"):
        del buf[:1]  # resynchronise on the next FF; the frame may have started inside this one
        return FrameError("bad CRC", 1)
    frame = bytes(buf[:total])
    del buf[:total]
    return total, frame[2], frame[3 : total - 2]


def parse_record(msg: bytes, i: int, flags: int) -> tuple[TagReport, int]:
    """One tag record as MercuryAPI's TMR_SR_parseMetadataFromMessage reads it; raises IndexError/ValueError."""
    rssi: int | None = None
    antenna = 1
    if flags & MD_READCOUNT:
        i += 1
    if flags & MD_RSSI:
        rssi = msg[i] - 256 if msg[i] > 127 else msg[i]
        i += 1
    if flags & MD_ANTENNA:
        antenna = msg[i] >> 4 or 16  # high nibble: TX port; port 0 means 16
        i += 1
    if flags & MD_FREQUENCY:
        i += 3
    if flags & MD_TIMESTAMP:
        i += 4
    if flags & MD_PHASE:
        i += 2
    if flags & MD_PROTOCOL:
        i += 1
    if flags & MD_DATA:
        bits = int.from_bytes(msg[i : i + 2], "big")
        i += 2 + (bits + 7) // 8
    if flags & MD_GPIO:
        i += 1
    for bit in (MD_GEN2_Q, MD_GEN2_LF, MD_GEN2_TARGET):
        if flags & bit:
            i += 1
    if i + 2 > len(msg):
        raise IndexError("record truncated")
    epc_bits = int.from_bytes(msg[i : i + 2], "big")
    i += 2
    n = (epc_bits + 7) // 8  # PC + EPC + EPC CRC
    if n < 4 or i + n > len(msg):
        raise ValueError(f"EPC length {epc_bits} bits does not fit the record")
    pc = int.from_bytes(msg[i : i + 2], "big")
    epc_start = i + 2
    epc_end = i + n - 2
    if pc & 0x0200:  # XPC_W1 indicator: one extended PC word precedes the EPC
        epc_start += 2
    if epc_start > epc_end:
        raise ValueError("EPC length shorter than its PC words")
    return TagReport(bytes(msg[epc_start:epc_end]), antenna, rssi), i + n


def encode_record(report: TagReport, flags: int = METADATA_FLAGS, *, timestamp_ms: int = 0) -> bytes:
    """A tag record as a module sends it (used by the emulator; inverse of parse_record)."""
    out = bytearray()
    port = report.antenna & 0x0F
    if flags & MD_READCOUNT:
        out.append(1)
    if flags & MD_RSSI:
        out.append((report.rssi if report.rssi is not None else -60) & 0xFF)
    if flags & MD_ANTENNA:
        out.append(port << 4 | port)
    if flags & MD_FREQUENCY:
        out += (866_900).to_bytes(3, "big")
    if flags & MD_TIMESTAMP:
        out += (timestamp_ms & 0xFFFFFFFF).to_bytes(4, "big")
    if flags & MD_PHASE:
        out += b"\x00\x00"
    if flags & MD_PROTOCOL:
        out.append(PROTOCOL_GEN2)
    if flags & MD_DATA:
        out += b"\x00\x00"
    if flags & MD_GPIO:
        out.append(0x0F)
    words = (len(report.epc) + 1) // 2
    epc = report.epc.ljust(words * 2, b"\x00")
    pc = (words << 11).to_bytes(2, "big")
    out += ((len(epc) + 4) * 8).to_bytes(2, "big") + pc + epc + gen2_crc(pc + epc).to_bytes(2, "big")
    return bytes(out)


class Session(ReaderSession):
    """Host side: boot the module, then stream (continuous read) or poll (0x2A/0x22/0x29)."""

    protocol = "mercury"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._steps: list[tuple[int, bytes]] = []
        self._waiting: int | None = None
        self.booted = False
        self.version: bytes | None = None
        self._tags_expected = 0
        self._tags_received = 0

    @property
    def polled(self) -> bool:
        return self.mode == "polled"

    def start(self) -> None:
        # A module left streaming by a previous run answers nothing else until stopped.
        self._send(build_command(OP_MULTI_PROTOCOL, STOP_READING_DATA))
        self.booted = False
        self._steps = [(OP_VERSION, b""), (OP_GET_PROGRAM, b"")]
        self._next_step()

    def pause(self) -> None:
        self._steps.clear()
        self._waiting = None
        if not self.polled:
            self._send(build_command(OP_MULTI_PROTOCOL, STOP_READING_DATA))

    def response_timeout(self) -> None:
        if self.booted:
            self._steps.clear()
            self._waiting = None

    def poll(self) -> None:
        if not self.booted or self._waiting is not None:
            return  # still booting, or the previous inventory is not answered yet
        self._steps = [(OP_CLEAR_TAG_BUFFER, b""), (OP_READ_TAG_MULTIPLE, bytes.fromhex("00001301F4"))]
        self._next_step()

    def _next_step(self) -> None:
        if self._steps:
            opcode, data = self._steps.pop(0)
            self._waiting = opcode
            self._send(build_command(opcode, data))
        else:
            self._waiting = None

    def _configure(self) -> None:
        steps: list[tuple[int, bytes]] = [(OP_SET_PROTOCOL, bytes((0x00, PROTOCOL_GEN2)))]
        if self.region is not None:
            steps.append((OP_SET_REGION, bytes((REGIONS[self.region],))))
        ports = b"".join(bytes((a & 0x0F, a & 0x0F)) for a in self.antennas)
        steps.append((OP_SET_ANTENNA, b"\x02" + ports))  # antenna search list: (tx, rx) pairs
        steps.append((OP_SET_READER_CONFIG, DISABLE_READ_FILTER_DATA))
        if not self.polled:
            steps.append((OP_MULTI_PROTOCOL, START_READING_DATA))
        self._steps = steps

    def _next_event(self) -> ReaderEvent | NeedData:
        found = _scan(self._rx.data, 7, MAX_RESPONSE_DATA)
        if not isinstance(found, tuple):
            return found
        _, opcode, payload = found
        status = int.from_bytes(payload[:2], "big")
        data = payload[2:]
        try:
            return self._on_frame(opcode, status, data)
        except (IndexError, ValueError) as exc:
            return FrameError(f"malformed 0x{opcode:02X} response: {exc}", 0)

    def _on_frame(self, opcode: int, status: int, data: bytes) -> ReaderEvent:
        if opcode == OP_READ_TAG_MULTIPLE and not self.polled:
            if status != STATUS_OK or not data:
                # Keep-alive at the end of each search cycle (0x0400), or a throttle/antenna warning.
                return ReaderReply(opcode, status, status == STATUS_NO_TAGS_FOUND, "end of search cycle")
            # Streamed record: option, search flags(2), metadata flags(2), response type, record.
            if len(data) < 6:
                raise ValueError("streamed record too short")
            flags = int.from_bytes(data[3:5], "big")
            if data[5] != 0x01:
                return ReaderReply(opcode, status, True, f"stream report type {data[5]}")
            report, _ = parse_record(data, 6, flags)
            return report
        reply = ReaderReply(opcode, status, status == STATUS_OK)
        if opcode == OP_GET_TAG_BUFFER:
            return self._on_tag_buffer(status, data) or reply
        if opcode != self._waiting:
            return reply  # an answer to a command we did not send (a module reset, a late reply)
        if opcode == OP_VERSION and status == STATUS_OK:
            self.version = data
        elif opcode == OP_GET_PROGRAM and status == STATUS_OK and data and data[0] & 0x03 == 1:
            self._steps.insert(0, (OP_BOOT_FIRMWARE, b""))  # in the bootloader: start the application
        elif opcode == OP_READ_TAG_MULTIPLE:
            count = int.from_bytes(data[4:8], "big") if len(data) == 7 else (data[3] if len(data) >= 4 else 0)
            self._tags_expected, self._tags_received = count, 0
            if status == STATUS_OK and count:
                self._steps = [(OP_GET_TAG_BUFFER, METADATA_FLAGS.to_bytes(2, "big") + b"\x00")]
        if not self.booted and not self._steps and opcode in (OP_GET_PROGRAM, OP_BOOT_FIRMWARE):
            self._configure()
        if not self._steps and self._waiting in (OP_SET_READER_CONFIG, OP_MULTI_PROTOCOL):
            self.booted = True
        self._next_step()
        return reply

    def _on_tag_buffer(self, status: int, data: bytes) -> TagReport | None:
        # DATA: metadata flags(2), read options, count, then `count` records; delivered as separate events.
        if status != STATUS_OK or len(data) < 4:
            self._waiting = None
            return None
        flags = int.from_bytes(data[:2], "big")
        count = data[3]
        i = 4
        reports = []
        for _ in range(count):
            report, i = parse_record(data, i, flags)
            reports.append(report)
        self._tags_received += count
        if self._tags_received < self._tags_expected and count:
            self._steps = [(OP_GET_TAG_BUFFER, METADATA_FLAGS.to_bytes(2, "big") + b"\x00")]
        self._next_step()
        if not reports:
            return None
        self._ready.extend(reports[1:])  # one frame, several tags: next_event() returns them in turn
        return reports[0]


# The version block of the M6e Nano in SparkFun's logs (bootloader, hardware 0x30 = Nano, date, firmware, GEN2).
_VERSION_DATA: Final = bytes.fromhex("1412080030000002201503100103014700000010")
# Records that fit in one 0x29 reply with 12-byte EPCs and flags 0x01FF (31 bytes each, 248 max).
_RECORDS_PER_BUFFER_REPLY: Final = 7


class Emulator(ReaderEmulator):
    """Device side: an M6e Nano as far as the agent can tell."""

    protocol = "mercury"

    def __init__(self, *, address: int = 0) -> None:
        super().__init__(address=address)
        self.streaming = False
        self.in_bootloader = False
        self._buffer: list[TagReport] = []
        self._clock_ms = 0
        self.commands: list[int] = []  # opcodes received, for tests

    def _answer_commands(self) -> None:
        while True:
            found = _scan(self._rx.data, 5, 250)
            if isinstance(found, NeedData):
                return
            if not isinstance(found, tuple):
                continue  # garbage from the host: a real module ignores it too
            _, opcode, data = found
            self.commands.append(opcode)
            self._answer(opcode, data)

    def _answer(self, opcode: int, data: bytes) -> None:
        reply = build_response
        if opcode == OP_VERSION:
            self._send(reply(OP_VERSION, data=_VERSION_DATA))
        elif opcode == OP_GET_PROGRAM:
            self._send(reply(OP_GET_PROGRAM, data=b"\x51" if self.in_bootloader else b"\x52"))
        elif opcode == OP_BOOT_FIRMWARE:
            self.in_bootloader = False
            self._send(reply(OP_BOOT_FIRMWARE, data=_VERSION_DATA))
        elif opcode in (OP_SET_BAUD, OP_SET_ANTENNA, OP_SET_READ_POWER, OP_SET_PROTOCOL, OP_SET_REGION,
                        OP_SET_READER_CONFIG, OP_CLEAR_TAG_BUFFER):
            if opcode == OP_CLEAR_TAG_BUFFER:
                self._buffer = []
            self._send(reply(opcode))
        elif opcode == OP_MULTI_PROTOCOL and data[2:3] == b"\x01":
            self.streaming = True
            self._send(reply(OP_MULTI_PROTOCOL, data=bytes.fromhex("0122") + data[5:7]))
        elif opcode == OP_MULTI_PROTOCOL and data[2:3] == b"\x02":
            self.streaming = False
            self._send(reply(OP_MULTI_PROTOCOL, data=b"\x02"))
        elif opcode == OP_READ_TAG_MULTIPLE:
            self._buffer = list(self.field)
            if not self._buffer:
                self._send(reply(OP_READ_TAG_MULTIPLE, STATUS_NO_TAGS_FOUND))
            else:
                self._send(reply(OP_READ_TAG_MULTIPLE, data=data[:3] + len(self._buffer).to_bytes(4, "big")))
        elif opcode == OP_GET_TAG_BUFFER:
            flags = int.from_bytes(data[:2], "big") if len(data) >= 2 else METADATA_FLAGS
            chunk, self._buffer = self._buffer[:_RECORDS_PER_BUFFER_REPLY], self._buffer[_RECORDS_PER_BUFFER_REPLY:]
            body = b"".join(encode_record(t, flags) for t in chunk)
            self._send(reply(OP_GET_TAG_BUFFER, data=flags.to_bytes(2, "big") + b"\x00" + bytes((len(chunk),)) + body))
        else:
            self._send(reply(opcode, STATUS_INVALID_OPCODE))

    def _stream(self) -> None:
        if not self.streaming:
            return
        self._clock_ms += 100
        if not self.field:
            self._send(build_response(OP_READ_TAG_MULTIPLE, STATUS_NO_TAGS_FOUND))
            return
        head = bytes.fromhex("10001B") + METADATA_FLAGS.to_bytes(2, "big") + b"\x01"
        for tag in self.field:
            self._send(build_response(OP_READ_TAG_MULTIPLE, data=head + encode_record(tag, timestamp_ms=self._clock_ms)))


def stream_frames(reports: Sequence[TagReport]) -> bytes:
    """Streamed tag-record frames for `reports`, as a module in continuous read sends them (bench, tests)."""
    head = bytes.fromhex("10001B") + METADATA_FLAGS.to_bytes(2, "big") + b"\x01"
    return b"".join(build_response(OP_READ_TAG_MULTIPLE, data=head + encode_record(r)) for r in reports)
