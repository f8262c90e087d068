"""Beacon formats carried in advertising data: iBeacon, Eddystone (UID, URL, TLM, EID), AltBeacon.

Sources: Apple "Proximity Beacon Specification" (iBeacon: company 0x004C, type 0x02, length 0x15);
google/eddystone protocol-specification.md, eddystone-url/README.md and eddystone-tlm/tlm-plain.md
(service 0xFEAA, frame types 0x00/0x10/0x20/0x30); AltBeacon specification (beacon code 0xBEAC).
Pure functions over the AD structures of one report; a malformed frame raises BeaconError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "AltBeacon",
    "Beacon",
    "BeaconError",
    "EddystoneEid",
    "EddystoneTlm",
    "EddystoneUid",
    "EddystoneUrl",
    "IBeacon",
    "decode",
    "encode_eddystone_tlm",
    "encode_eddystone_uid",
    "encode_ibeacon",
]

AD_MANUFACTURER: Final = 0xFF
AD_SERVICE_DATA_16: Final = 0x16
APPLE: Final = 0x004C
EDDYSTONE: Final = 0xFEAA

# eddystone-url/README.md: URL scheme prefixes and HTTP URL encodings.
URL_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: Final = (".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
                         ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov")


class BeaconError(ValueError):
    """A beacon frame that does not follow its format."""


def _s8(b: int) -> int:
    return b - 256 if b > 127 else b


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str
    major: int
    minor: int
    power: int  # measured power at 1 m, dBm

    kind = "ibeacon"

    @property
    def identity(self) -> str:
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    namespace: str
    instance: str
    tx_power: int  # at 0 m, dBm

    kind = "eddystone-uid"

    @property
    def identity(self) -> str:
        return f"eddystone:{self.namespace}:{self.instance}"


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    url: str
    tx_power: int

    kind = "eddystone-url"

    @property
    def identity(self) -> str:
        return f"url:{self.url}"


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    version: int
    battery_mv: int | None  # 0: not supported
    temperature_c: float | None  # 0x8000: not supported
    adv_count: int
    uptime_s: float

    kind = "eddystone-tlm"
    identity = None


@dataclass(frozen=True, slots=True)
class EddystoneEid:
    eid: str
    tx_power: int

    kind = "eddystone-eid"

    @property
    def identity(self) -> str:
        return f"eid:{self.eid}"


@dataclass(frozen=True, slots=True)
class AltBeacon:
    manufacturer: int
    beacon_id: str
    ref_rssi: int
    reserved: int

    kind = "altbeacon"

    @property
    def identity(self) -> str:
        return f"altbeacon:{self.beacon_id}"


Beacon = IBeacon | EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEid | AltBeacon


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _url(scheme: int, encoded: bytes) -> str:
    if scheme >= len(URL_SCHEMES):
        raise BeaconError(f"unknown URL scheme prefix 0x{scheme:02X}")
    out = [URL_SCHEMES[scheme]]
    for b in encoded:
        if b < len(URL_EXPANSIONS):
            out.append(URL_EXPANSIONS[b])
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            raise BeaconError(f"byte 0x{b:02X} is not allowed in an Eddystone-URL")
    return "".join(out)


def _eddystone(frame: bytes) -> Beacon:
    if not frame:
        raise BeaconError("empty Eddystone frame")
    ftype = frame[0]
    if ftype == 0x00:
        if len(frame) not in (18, 20):
            raise BeaconError(f"Eddystone-UID frame of {len(frame)} bytes (18 or 20)")
        return EddystoneUid(frame[2:12].hex(), frame[12:18].hex(), _s8(frame[1]))
    if ftype == 0x10:
        if not 3 <= len(frame) <= 20:
            raise BeaconError(f"Eddystone-URL frame of {len(frame)} bytes (3 to 20)")
        return EddystoneUrl(_url(frame[2], frame[3:]), _s8(frame[1]))
    if ftype == 0x20:
        if len(frame) < 2:
            raise BeaconError("Eddystone-TLM frame without its version")
        if frame[1] != 0x00:
            return EddystoneTlm(frame[1], None, None, 0, 0.0)  # encrypted (eTLM): only the version is readable
        if len(frame) != 14:
            raise BeaconError(f"Eddystone-TLM frame of {len(frame)} bytes (14)")
        vbatt = int.from_bytes(frame[2:4], "big")
        raw_temp = int.from_bytes(frame[4:6], "big", signed=True)
        temp = None if frame[4:6] == b"\x80\x00" else raw_temp / 256.0
        return EddystoneTlm(0, vbatt or None, temp, int.from_bytes(frame[6:10], "big"),
                            int.from_bytes(frame[10:14], "big") / 10.0)
    if ftype == 0x30:
        if len(frame) != 10:
            raise BeaconError(f"Eddystone-EID frame of {len(frame)} bytes (10)")
        return EddystoneEid(frame[2:10].hex(), _s8(frame[1]))
    raise BeaconError(f"unknown Eddystone frame type 0x{ftype:02X}")


def decode(ad: tuple[tuple[int, bytes], ...]) -> Beacon | None:
    """The beacon this advertisement carries, None if it carries none we know."""
    for ad_type, data in ad:
        if ad_type == AD_MANUFACTURER and len(data) >= 4:
            company = int.from_bytes(data[:2], "little")
            if company == APPLE and data[2:4] == b"\x02\x15":
                if len(data) != 25:
                    raise BeaconError(f"iBeacon data of {len(data)} bytes (25)")
                return IBeacon(_uuid(data[4:20]), int.from_bytes(data[20:22], "big"),
                               int.from_bytes(data[22:24], "big"), _s8(data[24]))
            if data[2:4] == b"\xbe\xac":
                if len(data) != 26:
                    raise BeaconError(f"AltBeacon data of {len(data)} bytes (26)")
                return AltBeacon(company, data[4:24].hex(), _s8(data[24]), data[25])
        elif ad_type == AD_SERVICE_DATA_16 and len(data) >= 2 and int.from_bytes(data[:2], "little") == EDDYSTONE:
            return _eddystone(data[2:])
    return None


# -- encoders: the project's own captures (tests, demo) are made from these ----------------------

def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes((len(data) + 1, ad_type)) + data


FLAGS_AD: Final = _ad(0x01, b"\x06")  # LE General Discoverable, BR/EDR not supported


def encode_ibeacon(uuid: str, major: int, minor: int, power: int) -> bytes:
    body = APPLE.to_bytes(2, "little") + b"\x02\x15" + bytes.fromhex(uuid.replace("-", ""))
    body += major.to_bytes(2, "big") + minor.to_bytes(2, "big") + bytes((power & 0xFF,))
    return FLAGS_AD + _ad(AD_MANUFACTURER, body)


def _eddystone_ad(frame: bytes) -> bytes:
    return FLAGS_AD + _ad(0x03, EDDYSTONE.to_bytes(2, "little")) + _ad(AD_SERVICE_DATA_16,
                                                                     EDDYSTONE.to_bytes(2, "little") + frame)


def encode_eddystone_uid(namespace: str, instance: str, tx_power: int) -> bytes:
    return _eddystone_ad(b"\x00" + bytes((tx_power & 0xFF,)) + bytes.fromhex(namespace) + bytes.fromhex(instance)
                         + b"\x00\x00")


def encode_eddystone_tlm(battery_mv: int, temperature_c: float, adv_count: int, uptime_s: float) -> bytes:
    temp = round(temperature_c * 256).to_bytes(2, "big", signed=True)
    return _eddystone_ad(b"\x20\x00" + battery_mv.to_bytes(2, "big") + temp + adv_count.to_bytes(4, "big")
                         + int(uptime_s * 10).to_bytes(4, "big"))
