"""Chafon UHFReader18 / CF-RU5102 family serial protocol (answer mode and active/scan mode).

Sources (the tests cite the frames they use):
  * CF-RU5102 UHF RFID Reader User's Manual V1.2, sections 3 (frames, CRC), 5 (status), 8.2.1 (inventory),
    8.4.1 (reader information);
  * UHFReader18 User's Manual V2.0, 8.4.9 / 8.4.10 (Set/Get WorkMode, the 0xEE scan-mode output).

Frames (little-endian CRC, everything else big-endian):
  host -> reader   Len Adr Cmd Data[] CRC_L CRC_H           Len = len(Data) + 4
  reader -> host   Len Adr reCmd Status Data[] CRC_L CRC_H  Len = len(Data) + 5
Len counts every byte after itself. The CRC is the manual's uiCrc16Cal (preset
0xFFFF, polynomial 0x8408, i.e. CRC-16/MCRF4XX) over Len .. the last Data byte;
over a whole valid frame it leaves 0.

There is no start byte: after a bad frame the codec drops one byte and tries
the next as a length, which finds the next good frame (a frame also has to
come from our reader address to count as a candidate).
This family reports neither antenna nor RSSI: reports carry antenna 1, RSSI None.
"""

from __future__ import annotations

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

__all__ = ["Emulator", "Session", "build_command", "build_response", "crc16"]

BROADCAST: Final = 0xFF
CMD_INVENTORY: Final = 0x01
CMD_INVENTORY_SINGLE: Final = 0x0F
CMD_READER_INFO: Final = 0x21
CMD_SET_WORK_MODE: Final = 0x35
CMD_GET_WORK_MODE: Final = 0x36
RECMD_ACTIVE: Final = 0xEE  # frames the reader sends on its own in scan/trigger mode
RECMD_BAD_COMMAND: Final = 0x00

# Status (manual section 5).
ST_OK: Final = 0x00
ST_INVENTORY_DONE: Final = 0x01  # inventory finished before ScanTime
ST_INVENTORY_TIMEOUT: Final = 0x02  # ScanTime overflow, not every tag read
ST_MORE_FRAMES: Final = 0x03  # tags did not fit in one frame: more follow
ST_MEMORY_FULL: Final = 0x04
ST_NO_TAG: Final = 0xFB
ST_ILLEGAL_COMMAND: Final = 0xFE
_INVENTORY_STATUSES: Final = (ST_INVENTORY_DONE, ST_INVENTORY_TIMEOUT, ST_MORE_FRAMES, ST_MEMORY_FULL)

# Set WorkMode parameters (V2.0 8.4.9): Read_mode, Mode_state, Mem_Inven, First_Adr, Word_Num, Tag_Time.
ANSWER_MODE: Final = bytes(6)
# Scan mode, 18000-6C, output on RS232/RS485 (Mode_state bit1), Mem_Inven 0x04 = inventory multiple (EPC only).
SCAN_MODE: Final = bytes((0x01, 0x02, 0x04, 0x00, 0x00, 0x00))

_MIN_RESPONSE_LEN: Final = 5


def crc16(data: bytes | bytearray | memoryview) -> int:
    """uiCrc16Cal from the manual: preset 0xFFFF, polynomial 0x8408 (CRC-16/MCRF4XX)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def _fast_crc16(data: bytes | bytearray | memoryview) -> int:
    """The same CRC, table-driven for the hot path (identical results, tested)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE: Final = _make_table()


def build_command(address: int, command: int, data: bytes = b"") -> bytes:
    body = bytes((len(data) + 4, address, command)) + data
    return body + _fast_crc16(body).to_bytes(2, "little")


def build_response(address: int, recmd: int, status: int, data: bytes = b"") -> bytes:
    if len(data) > 250:
        raise ValueError("response data is at most 250 bytes")
    body = bytes((len(data) + 5, address, recmd, status)) + data
    return body + _fast_crc16(body).to_bytes(2, "little")


def _next_frame(buf: bytearray, min_len: int, address: int) -> FrameError | NeedData | bytes:
    if not buf:
        return NEED_DATA
    length = buf[0]
    if length < min_len:
        del buf[:1]
        return FrameError(f"length {length} too short", 1)
    if len(buf) >= 2 and address != BROADCAST and buf[1] not in (address, BROADCAST):
        del buf[:1]
        return FrameError(f"not from reader address {address}", 1)
    total = length + 1
    if len(buf) < total:
        return NEED_DATA
    if _fast_crc16(memoryview(buf)[:total]) != 0:  # CRC over the frame including its CRC leaves 0
        del buf[:1]
        return FrameError("bad CRC", 1)
    frame = bytes(buf[:total])
    del buf[:total]
    return frame


def parse_epc_list(data: bytes) -> list[bytes]:
    """Inventory Data: Num, then Num times (EPCLen, EPC). Raises ValueError when it does not add up."""
    if not data:
        raise ValueError("inventory data empty")
    num = data[0]
    epcs: list[bytes] = []
    i = 1
    for _ in range(num):
        if i >= len(data):
            raise ValueError(f"inventory says {num} tags, data holds {len(epcs)}")
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            raise ValueError(f"EPC length {n} does not fit")
        epcs.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    if i != len(data):
        raise ValueError(f"{len(data) - i} byte(s) after the last EPC")
    return epcs


class Session(ReaderSession):
    """Host side. mode "auto"/"polled": answer mode, the host asks (0x01); "active": scan mode, the reader streams."""

    protocol = "uhfreader18"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._inventory_running = False
        self.reader_info: bytes | None = None

    @property
    def polled(self) -> bool:
        return self.mode != "active"

    def start(self) -> None:
        self._inventory_running = False
        self._send(build_command(self.address, CMD_READER_INFO))
        self._send(build_command(self.address, CMD_SET_WORK_MODE, ANSWER_MODE if self.polled else SCAN_MODE))

    def pause(self) -> None:
        if not self.polled:
            self._send(build_command(self.address, CMD_SET_WORK_MODE, ANSWER_MODE))

    def response_timeout(self) -> None:
        self._inventory_running = False

    def poll(self) -> None:
        # The reader loses a command sent while it still executes the previous one (manual section 2).
        if self._inventory_running:
            return
        self._inventory_running = True
        self._send(build_command(self.address, CMD_INVENTORY))

    def _next_event(self) -> ReaderEvent | NeedData:
        found = _next_frame(self._rx.data, _MIN_RESPONSE_LEN, self.address)
        if not isinstance(found, bytes):
            return found
        recmd, status, data = found[2], found[3], found[4:-2]
        if recmd == RECMD_ACTIVE:
            if status == ST_OK and data:
                return TagReport(data)
            return ReaderReply(recmd, status, True, "EAS alarm" if status == 0xEE else "active-mode report")
        if recmd in (CMD_INVENTORY, CMD_INVENTORY_SINGLE):
            if status != ST_MORE_FRAMES:
                self._inventory_running = False
            if status in _INVENTORY_STATUSES:
                try:
                    epcs = parse_epc_list(data)
                except ValueError as exc:
                    return FrameError(f"malformed inventory: {exc}", 0)
                reports = [TagReport(e) for e in epcs]
                if not reports:
                    return ReaderReply(recmd, status, True, "inventory: no tag")
                self._ready.extend(reports[1:])
                return reports[0]
            return ReaderReply(recmd, status, status == ST_NO_TAG, "inventory: no tag" if status == ST_NO_TAG else "")
        if recmd == CMD_READER_INFO and status == ST_OK:
            self.reader_info = data
            version = f"{data[0]}.{data[1]}" if len(data) >= 2 else "?"
            kind = f"type 0x{data[2]:02X}" if len(data) >= 3 else ""
            return ReaderReply(recmd, status, True, f"firmware {version} {kind}".strip())
        if recmd == RECMD_BAD_COMMAND:
            return ReaderReply(recmd, status, False, "reader: illegal command or CRC error")
        return ReaderReply(recmd, status, status == ST_OK)


# Reader information the emulator gives: firmware 2.36 (TID-capable), type 0x09 UHFReader18, 6B+6C,
# US band channels 0..62, 30 dBm, ScanTime 1 s.
_READER_INFO: Final = bytes((0x02, 0x24, 0x09, 0x03, 0x3E, 0x00, 0x1E, 0x0A))
# EPCs per inventory response frame before the emulator splits with status 0x03 ("more frames").
_EPCS_PER_FRAME: Final = 8


class Emulator(ReaderEmulator):
    """Device side: a UHFReader18 in answer mode (factory default) or scan mode."""

    protocol = "uhfreader18"

    def __init__(self, *, address: int = 0) -> None:
        super().__init__(address=address)
        self.read_mode = 0  # 0 answer, 1 scan
        self.commands: list[int] = []

    def _reply(self, recmd: int, status: int, data: bytes = b"") -> None:
        self._send(build_response(self.address, recmd, status, data))

    def _answer_commands(self) -> None:
        while True:
            found = _next_frame(self._rx.data, 4, BROADCAST)
            if isinstance(found, NeedData):
                return
            if isinstance(found, FrameError):
                continue
            adr, cmd, data = found[1], found[2], found[3:-2]
            if adr not in (self.address, BROADCAST):
                continue  # not for us: a real reader stays silent
            self.commands.append(cmd)
            self._answer(cmd, data)

    def _answer(self, cmd: int, data: bytes) -> None:
        if self.read_mode != 0 and not 0x21 <= cmd <= 0x3B:
            return  # in scan mode only reader-defined commands are answered (V2.0 8.4.9)
        if cmd == CMD_READER_INFO:
            self._reply(cmd, ST_OK, _READER_INFO)
        elif cmd == CMD_SET_WORK_MODE and len(data) == 6:
            self.read_mode = data[0] & 0x03
            self._reply(cmd, ST_OK)
        elif cmd == CMD_GET_WORK_MODE:
            self._reply(cmd, ST_OK, bytes((0, 0, 0, 0, self.read_mode, 0x02, 0x04, 0, 0, 0, 0, 0)))
        elif cmd in (CMD_INVENTORY, CMD_INVENTORY_SINGLE):
            epcs = [t.epc for t in self.field]
            if cmd == CMD_INVENTORY_SINGLE:
                epcs = epcs[:1]
            if not epcs:
                self._reply(cmd, ST_NO_TAG)
                return
            for start in range(0, len(epcs), _EPCS_PER_FRAME):
                chunk = epcs[start : start + _EPCS_PER_FRAME]
                last = start + _EPCS_PER_FRAME >= len(epcs)
                body = bytes((len(chunk),)) + b"".join(bytes((len(e),)) + e for e in chunk)
                self._reply(cmd, ST_INVENTORY_DONE if last else ST_MORE_FRAMES, body)
        elif 0x21 <= cmd <= 0x3B:
            self._reply(cmd, ST_OK)
        else:
            self._reply(RECMD_BAD_COMMAND, ST_ILLEGAL_COMMAND)

    def _stream(self) -> None:
        if self.read_mode == 1:
            for tag in self.field:
                self._reply(RECMD_ACTIVE, ST_OK, tag.epc)


def active_frames(address: int, reports: Sequence[TagReport]) -> bytes:
    """Scan-mode frames for `reports` (bench and tests)."""
    return b"".join(build_response(address, RECMD_ACTIVE, ST_OK, r.epc) for r in reports)
