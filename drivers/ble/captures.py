"""Capture files of HCI traffic: btsnoop (what `btmon -w` writes) and pcap, read and written.

btsnoop: a 16-byte header ("btsnoop\\0", version 1, datalink 1001 = HCI un-encapsulated, 1002 = HCI UART H4,
or 2001 = BlueZ monitor, which is what `btmon -w` writes),
then records: original length, included length, flags, cumulative drops (4 bytes each, big-endian) and a
64-bit timestamp in microseconds since 0 AD; flags bit 0 = received, bit 1 = command/event.
pcap: link types 187 (Bluetooth HCI H4) and 201 (H4 with a 4-byte direction pseudo-header).
Pure parsing of bytes; the replay source reads files in chunks with these.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from drivers.capture import CAPTURE_MAGICS, CaptureError, read_pcap

__all__ = ["CaptureError", "CapturedPacket", "read_capture", "write_btsnoop"]

BTSNOOP_MAGIC: Final = b"btsnoop\x00"
DATALINK_HCI: Final = 1001
DATALINK_H4: Final = 1002
# What `btmon -w` writes (BlueZ src/shared/btsnoop.h BTSNOOP_FORMAT_MONITOR): flags = adapter index << 16 |
# opcode, data without the H4 byte; opcode 3 is an HCI event.
DATALINK_MONITOR: Final = 2001
_MONITOR_EVENT: Final = 3
# Microseconds from 0 AD (nominal Gregorian) to 1970-01-01, as BlueZ's src/shared/btsnoop.c uses.
BTSNOOP_EPOCH_DELTA: Final = 0x00DCDDB30F2F8000
LINKTYPE_H4: Final = 187
LINKTYPE_H4_PHDR: Final = 201
# No HCI packet is bigger; a larger record length is a corrupt file.
MAX_RECORD: Final = 65536 + 8


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    ts: float  # seconds since the epoch
    h4: bytes  # the packet with its H4 type byte (0x04 for events)


def read_capture(f: BinaryIO) -> Iterator[CapturedPacket]:
    head = f.read(16)
    if head[:8] == BTSNOOP_MAGIC:
        yield from _btsnoop(f, head)
    elif head[:4] in CAPTURE_MAGICS:  # pcap, or pcapng as dumpcap and Wireshark write by default
        yield from _pcap(f, head + f.read(8))
    else:
        raise CaptureError("neither a btsnoop nor a pcap/pcapng file")


def _btsnoop(f: BinaryIO, head: bytes) -> Iterator[CapturedPacket]:
    if len(head) < 16:
        raise CaptureError("btsnoop header truncated")
    version, datalink = struct.unpack(">II", head[8:16])
    if version != 1 or datalink not in (DATALINK_HCI, DATALINK_H4, DATALINK_MONITOR):
        raise CaptureError(f"btsnoop version {version} / datalink {datalink} not supported (1 / 1001, 1002, 2001)")
    while True:
        rec = f.read(24)
        if not rec:
            return
        if len(rec) < 24:
            raise CaptureError("btsnoop record header truncated")
        _orig, incl, flags, _drops, ts = struct.unpack(">IIIIq", rec)
        if incl > MAX_RECORD:
            raise CaptureError(f"btsnoop record of {incl} bytes")
        data = f.read(incl)
        if len(data) < incl:
            raise CaptureError("btsnoop record truncated")
        if datalink == DATALINK_MONITOR:
            if flags & 0xFFFF != _MONITOR_EVENT:
                continue  # index and system notes, commands, ACL: not advertising reports
            data = b"\x04" + data
        elif datalink == DATALINK_HCI:
            # Un-encapsulated: the type comes from the flags (bit 1 set + received = an event).
            ptype = 0x04 if flags & 0x03 == 0x03 else 0x01 if flags & 0x02 else 0x02
            data = bytes((ptype,)) + data
        yield CapturedPacket((ts - BTSNOOP_EPOCH_DELTA) / 1e6, data)


def _pcap(f: BinaryIO, head: bytes) -> Iterator[CapturedPacket]:
    linktype, records = read_pcap(f, head, {LINKTYPE_H4, LINKTYPE_H4_PHDR}, "Bluetooth HCI H4 (187 or 201)",
                                  MAX_RECORD)
    for ts, data in records:
        yield CapturedPacket(ts, data[4:] if linktype == LINKTYPE_H4_PHDR else data)


def write_btsnoop(f: BinaryIO, packets: list[CapturedPacket]) -> None:
    """A btsnoop file (datalink H4) of received packets, as `btmon -w` would have recorded them."""
    f.write(BTSNOOP_MAGIC + struct.pack(">II", 1, DATALINK_H4))
    for p in packets:
        flags = 0x03 if p.h4[:1] == b"\x04" else 0x01
        f.write(struct.pack(">IIIIq", len(p.h4), len(p.h4), flags, 0, int(p.ts * 1e6) + BTSNOOP_EPOCH_DELTA))
        f.write(p.h4)
