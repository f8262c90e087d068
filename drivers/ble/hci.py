"""HCI LE advertising reports, sans-IO: one HCI event packet in, advertising reports out.

Bluetooth Core Specification 5.x, Vol 4, Part E:
  7.7.65.2  LE Advertising Report (LE Meta event 0x3E, subevent 0x02)
  7.7.65.13 LE Extended Advertising Report (subevent 0x0D)
Vol 3, Part C, 11: advertising data is a run of AD structures (length, type, data).

Reports are read one after another, each complete (as BlueZ and scapy read them).
Anything malformed raises `HciError`, a ValueError the caller counts; nothing else escapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["AdvReport", "HciError", "parse_ad", "parse_event"]

H4_EVENT: Final = 0x04
EVT_LE_META: Final = 0x3E
SUB_ADV_REPORT: Final = 0x02
SUB_EXT_ADV_REPORT: Final = 0x0D
# Extended reports: TX power / RSSI value meaning "not available".
_NOT_AVAILABLE: Final = 127

ADDRESS_TYPES: Final = {0: "public", 1: "random", 2: "public-identity", 3: "random-identity", 0xFF: "anonymous"}


class HciError(ValueError):
    """A malformed HCI event or AD structure."""


@dataclass(frozen=True, slots=True)
class AdvReport:
    address: str  # "AA:BB:CC:DD:EE:FF", most significant byte first (as printed by tools)
    address_type: str
    event_type: int
    rssi: int | None
    tx_power: int | None
    data: bytes
    extended: bool = False
    ad: tuple[tuple[int, bytes], ...] = field(default=())

    @property
    def random_address(self) -> bool:
        return self.address_type.startswith("random")


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _address(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in reversed(raw))  # on the wire little-endian


def parse_ad(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """AD structures: [(type, data)]. A zero length ends the significant part (Vol 3 Part C 11)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0:
            break
        if i + 1 + length > len(data):
            raise HciError(f"AD structure of {length} bytes at offset {i} runs past the {len(data)}-byte data")
        out.append((data[i + 1], data[i + 2 : i + 1 + length]))
        i += 1 + length
    return tuple(out)


def parse_event(packet: bytes, *, h4: bool = True) -> list[AdvReport]:
    """Advertising reports in one HCI event packet; [] for any other event. Raises HciError if malformed."""
    i = 0
    if h4:
        if not packet or packet[0] != H4_EVENT:
            return []
        i = 1
    if len(packet) < i + 2:
        raise HciError("event shorter than its header")
    code, plen = packet[i], packet[i + 1]
    body = packet[i + 2 :]
    if len(body) != plen:
        raise HciError(f"event says {plen} parameter bytes, has {len(body)}")
    if code != EVT_LE_META or not body:
        return []
    if body[0] == SUB_ADV_REPORT:
        return _legacy(body)
    if body[0] == SUB_EXT_ADV_REPORT:
        return _extended(body)
    return []


def _legacy(body: bytes) -> list[AdvReport]:
    if len(body) < 2:
        raise HciError("advertising report without Num_Reports")
    n = body[1]
    if not 1 <= n <= 0x19:
        raise HciError(f"Num_Reports {n} out of range 1-25")
    i = 2
    out = []
    for _ in range(n):
        if i + 9 > len(body):
            raise HciError("advertising report truncated in its header")
        etype, atype, addr, dlen = body[i], body[i + 1], body[i + 2 : i + 8], body[i + 8]
        if dlen > 31:
            raise HciError(f"legacy advertising data of {dlen} bytes (max 31)")
        data = body[i + 9 : i + 9 + dlen]
        if i + 9 + dlen + 1 > len(body):
            raise HciError("advertising report truncated in its data")
        rssi = _signed(body[i + 9 + dlen])
        out.append(AdvReport(_address(addr), ADDRESS_TYPES.get(atype, f"0x{atype:02X}"), etype,
                             None if rssi == _NOT_AVAILABLE else rssi, None, data, False, parse_ad(data)))
        i += 10 + dlen
    if i != len(body):
        raise HciError(f"{len(body) - i} byte(s) after the last report")
    return out


def _extended(body: bytes) -> list[AdvReport]:
    if len(body) < 2:
        raise HciError("extended report without Num_Reports")
    n = body[1]
    if not 1 <= n <= 0x0A:
        raise HciError(f"Num_Reports {n} out of range 1-10")
    i = 2
    out = []
    for _ in range(n):
        if i + 24 > len(body):
            raise HciError("extended report truncated in its header")
        etype = int.from_bytes(body[i : i + 2], "little")
        atype, addr = body[i + 2], body[i + 3 : i + 9]
        tx, rssi = _signed(body[i + 12]), _signed(body[i + 13])
        dlen = body[i + 23]
        data = body[i + 24 : i + 24 + dlen]
        if len(data) != dlen:
            raise HciError("extended report truncated in its data")
        out.append(AdvReport(_address(addr), ADDRESS_TYPES.get(atype, f"0x{atype:02X}"), etype,
                             None if rssi == _NOT_AVAILABLE else rssi, None if tx == _NOT_AVAILABLE else tx,
                             data, True, parse_ad(data)))
        i += 24 + dlen
    if i != len(body):
        raise HciError(f"{len(body) - i} byte(s) after the last report")
    return out


def encode_adv_report(address: str, data: bytes, rssi: int, *, address_type: int = 1, event_type: int = 3) -> bytes:
    """An H4 HCI LE Advertising Report event (one report): for captures the project generates and tests."""
    addr = bytes(reversed(bytes.fromhex(address.replace(":", ""))))
    report = bytes((event_type, address_type)) + addr + bytes((len(data),)) + data + bytes((rssi & 0xFF,))
    body = bytes((SUB_ADV_REPORT, 1)) + report
    return bytes((H4_EVENT, EVT_LE_META, len(body))) + body
