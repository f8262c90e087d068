"""802.11 probe requests from a monitor-mode capture, sans-IO: radiotap + 802.11 bytes in, (MAC, RSSI) out.

Radiotap (radiotap.org): version 0, pad, length (LE16), present bitmaps (LE32, bit 31 = another follows),
then fields in bit order, each aligned to its natural size: TSFT (bit 0, 8 bytes), Flags (1), Rate (1),
Channel (bit 3, 2+2 bytes), FHSS (2), dBm antenna signal (bit 5, signed byte). Flags bit 0x10 means the
frame ends with a 4-byte FCS. IEEE 802.11: frame control type 0 (management) subtype 4 is a probe
request, with a 24-byte header whose transmitter address (addr2) is at offset 10; control frames (type 1: a
10-byte ACK or CTS, a 16-byte RTS) and data and extension frames are other frames, not malformed probes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["ProbeError", "ProbeRequest", "encode_probe", "parse_radiotap_frame"]

_FIELD_SIZES: Final = ((0, 8, 8), (1, 1, 1), (2, 1, 1), (3, 4, 2), (4, 2, 1))  # (bit, size, alignment)
_SIGNAL_BIT: Final = 5
_FC_LEN: Final = 2
_PROBE_REQUEST_FC0: Final = 0x40  # protocol version 0, type 0 (management), subtype 4 (probe request)
_MGMT_HEADER_LEN: Final = 24  # frame control, duration, addr1-3, sequence control


class ProbeError(ValueError):
    """A capture record that is not a well-formed radiotap + 802.11 frame."""


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    mac: str
    rssi: int | None

    @property
    def randomized(self) -> bool:
        """Locally administered address (bit 1 of the first octet): phones randomise their probe MACs."""
        return bool(int(self.mac[:2], 16) & 0x02)


def parse_radiotap_frame(frame: bytes) -> ProbeRequest | None:
    """The probe request in one radiotap frame, None for any other 802.11 frame; ProbeError if malformed."""
    if len(frame) < 8 or frame[0] != 0:
        raise ProbeError("not a radiotap header (version 0)")
    rt_len = struct.unpack_from("<H", frame, 2)[0]
    if rt_len < 8 or rt_len > len(frame):
        raise ProbeError(f"radiotap length {rt_len} does not fit the {len(frame)}-byte frame")
    present = struct.unpack_from("<I", frame, 4)[0]
    offset = 8
    word = present
    while word & 0x80000000:  # extended bitmaps: skip them, the fields we read are in the first one
        if offset + 4 > rt_len:
            raise ProbeError("radiotap present bitmaps run past the header")
        word = struct.unpack_from("<I", frame, offset)[0]
        offset += 4
    rssi = None
    flags = 0
    for bit, size, align in _FIELD_SIZES:
        if present & (1 << bit):
            offset = (offset + align - 1) // align * align
            if offset + size > rt_len:
                raise ProbeError("radiotap fields run past the header")
            if bit == 1:
                flags = frame[offset]
            offset += size
    if present & (1 << _SIGNAL_BIT):
        if offset + 1 > rt_len:
            raise ProbeError("radiotap signal field runs past the header")
        rssi = struct.unpack_from("<b", frame, offset)[0]
    dot11 = frame[rt_len:]
    if flags & 0x10:
        dot11 = dot11[:-4]  # FCS at the end
    if len(dot11) < _FC_LEN:
        raise ProbeError("802.11 frame shorter than its frame control field")
    # Frame control, first byte: protocol version (bits 0-1), type (2-3), subtype (4-7). The type decides the
    # header length (a 10-byte ACK or CTS is a whole control frame), so it is read before any length check.
    if dot11[0] != _PROBE_REQUEST_FC0:
        return None
    if len(dot11) < _MGMT_HEADER_LEN:
        raise ProbeError("probe request shorter than the 24-byte management header")
    return ProbeRequest(":".join(f"{b:02x}" for b in dot11[10:16]), rssi)


def encode_probe(mac: str, rssi: int, ssid: bytes = b"") -> bytes:
    """A radiotap (flags + dBm signal) probe request, for the project's own captures and tests."""
    radiotap = struct.pack("<BBHI", 0, 0, 10, (1 << 1) | (1 << _SIGNAL_BIT)) + bytes((0x00, rssi & 0xFF))
    addr = bytes.fromhex(mac.replace(":", ""))
    header = bytes((0x40, 0x00)) + b"\x00\x00" + b"\xff" * 6 + addr + b"\xff" * 6 + b"\x00\x00"
    body = bytes((0, len(ssid))) + ssid + bytes((1, 4, 0x02, 0x04, 0x0B, 0x16))
    return radiotap + header + body
