"""Beacon formats from published vectors (each cited), plus fuzzing.

Sources:
  * citruz/beacontools tests/test_parser.py: AD bytes for Eddystone UID/URL/TLM/EID and iBeacon
    (its TLM vector carries one stray trailing byte `e4`, an RSSI copied from an HCI report; stripped here);
  * home-assistant/core tests/components/ibeacon/__init__.py and Bluetooth-Devices/ibeacon-ble
    tests/test_init.py::test_parse: BlueCharm (uuid 426c7565-…, 3838, 4949, -59) and Feasy iBeacons,
    Eddystone-TLM service data;
  * secdev/scapy test/contrib/ibeacon.uts "iBeacon (decode advertising frame)": a whole HCI event;
    test/contrib/eddystone.uts: Eddystone-URL frames; test/scapy/layers/bluetooth.uts: an extended report;
  * AltBeacon/android-beacon-library BeaconParserTest / AltBeaconParserTest: AltBeacon AD bytes.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.beacons import (
    AltBeacon,
    BeaconError,
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    decode,
    encode_eddystone_tlm,
    encode_eddystone_uid,
    encode_ibeacon,
)
from drivers.ble.hci import HciError, parse_ad, parse_event

H = bytes.fromhex


def ad(hex_: str) -> tuple[tuple[int, bytes], ...]:
    return parse_ad(H(hex_))


@pytest.mark.parametrize(("hex_", "expected"), [
    # beacontools test_parser.py
    ("0201060303aafe1716aafe00e3123456789012346789010000000000010000",
     EddystoneUid("12345678901234678901", "000000000001", -29)),
    ("0303aafe1316aafe10f8036769746875620063697472757a", EddystoneUrl("https://github.com/citruz", -8)),
    ("0201060303aafe1116aafe20000b1813000000146700002ac4", EddystoneTlm(0, 2840, 19.0, 5223, 1094.8)),
    ("0201060303aafe0d16aafe30e34549445f74657374", EddystoneEid(b"EID_test".hex(), -29)),
    ("0201061aff4c0002154142434445464748494041424344454600010002f8",
     IBeacon("41424344-4546-4748-4940-414243444546", 1, 2, -8)),
    # Home Assistant / ibeacon-ble: manufacturer data 0x004C (AD = 1aff4c00 + value)
    ("1aff4c00" + "0215426c7565436861726d426561636f6e730efe1355c5",
     IBeacon("426c7565-4368-6172-6d42-6561636f6e73", 3838, 4949, -59)),
    ("1aff4c00" + "0215fda50693a4e24fb1afcfc6eb07647825275165c1fd",
     IBeacon("fda50693-a4e2-4fb1-afcf-c6eb07647825", 10065, 26049, -3)),
    # HA BLUECHARM_2 Eddystone-TLM service data (frame bytes), wrapped in a service-data AD
    ("1116aafe" + "20000c001c000000066800003810", EddystoneTlm(0, 3072, 28.0, 1640, 1435.2)),
    # HA FEASY: temperature 0x8000 = not supported
    ("1116aafe" + "20000c868000000093660b7f9322", EddystoneTlm(0, 3206, None, 37734, 19291011.4)),
    # scapy eddystone.uts
    ("0c16aafe10040373636170790a", EddystoneUrl("https://scapy.net", 4)),
    # AltBeacon BeaconParserTest.testRecognizeBeaconWithFormatSpecifyingManufacturer
    ("02011a1bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c509000000",
     AltBeacon(0x118, "2f234454cf6d4a0fadf2f4911ba9ffa600010002", -59, 9)),
])
def test_published_vectors(hex_: str, expected: object) -> None:
    assert decode(ad(hex_)) == expected


def test_scapy_ibeacon_hci_event() -> None:
    event = H("043E2A02010001FCED16D4EED61E0201061AFF4C000215B9407F30F5F8466EAFF925556B57FE6DEDFCD416B6B4")
    (report,) = parse_event(event)
    assert (report.address, report.address_type, report.rssi) == ("D6:EE:D4:16:ED:FC", "random", -76)
    assert decode(report.ad) == IBeacon("b9407f30-f5f8-466e-aff9-25556b57fe6d", 60924, 54294, -74)


def test_scapy_extended_report_with_two_reports() -> None:
    event = H("043e500d02120001f6e5d4c3b2a10100ff7fab000000000000000000100303ffff0b16ffff73636170790000001a0001"
              "f6e5d4c3b2a10100ff7fab0000000000000000000e0dffffff73636170790001020304")
    reports = parse_event(event)
    assert [(r.address, r.rssi, r.tx_power, r.event_type) for r in reports] == [
        ("A1:B2:C3:D4:E5:F6", -85, None, 0x12), ("A1:B2:C3:D4:E5:F6", -85, None, 0x1A)]
    assert reports[1].ad == ((0xFF, H("ffff73636170790001020304")),)


def mfg(hex_: str) -> str:
    return f"{len(H(hex_)) + 1:02x}ff" + hex_


def svc(frame: str) -> str:
    return f"{len(H(frame)) + 3:02x}16aafe" + frame


@pytest.mark.parametrize(("hex_", "error"), [
    (mfg("4c000215426c7565436861726d426561636f6e73"), "iBeacon data of 20 bytes"),  # ibeacon-ble SHORT_SERVICE_INFO
    (svc("00e31234567890123467"), "Eddystone-UID frame of 10 bytes"),
    (svc("10f80a"), "unknown URL scheme"),
    (svc("10f803ff"), "not allowed in an Eddystone-URL"),
    (svc("20000b18"), "Eddystone-TLM frame of 4 bytes"),
    (svc("4000"), "unknown Eddystone frame type"),
    (mfg("1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c5"), "AltBeacon data of 25 bytes"),
])
def test_malformed_frames(hex_: str, error: str) -> None:
    with pytest.raises(BeaconError, match=error):
        decode(ad(hex_))


@pytest.mark.parametrize("hex_", [
    mfg("15000215426c7565436861726d426561636f6e730efe1355c5"),  # ibeacon-ble NOT_IBEACON (company 21)
    mfg("4c001015426c7565436861726d426561636f6e730efe1355c5"),  # subtype 0x10: not an iBeacon
    "02011a03036ffd17166ffd0d3b4f65584c582160571dd19010d41c2660ee34",  # exposure notification: not a beacon
])
def test_not_beacons(hex_: str) -> None:
    assert decode(ad(hex_)) is None


def test_altbeacon_with_a_wrong_code_is_malformed_advertising_data() -> None:
    # AltBeaconParserTest.testParseWrongFormatReturnsNothing: AD length 0x1a leaves a stray byte behind
    with pytest.raises(HciError, match="runs past"):
        ad("02011a1aff1801ffff2f234454cf6d4a0fadf2f4911ba9ffa600010002c509")


def test_encrypted_tlm_is_recognised_but_not_read() -> None:
    assert decode(ad("1516aafe2001" + "41" * 12 + "deadbeff")) == EddystoneTlm(1, None, None, 0, 0.0)


def test_our_encoders_round_trip() -> None:
    assert decode(parse_ad(encode_ibeacon("426c7565-4368-6172-6d42-6561636f6e73", 3838, 4949, -59))) == IBeacon(
        "426c7565-4368-6172-6d42-6561636f6e73", 3838, 4949, -59)
    assert decode(parse_ad(encode_eddystone_uid("12345678901234678901", "000000000001", -29))) == EddystoneUid(
        "12345678901234678901", "000000000001", -29)
    assert decode(parse_ad(encode_eddystone_tlm(2840, 19.0, 5223, 1094.8))) == EddystoneTlm(0, 2840, 19.0, 5223, 1094.8)
    # beacontools' TLM frame, byte for byte (without its stray trailing byte)
    assert encode_eddystone_tlm(2840, 19.0, 5223, 1094.8) == H("0201060303aafe1116aafe20000b1813000000146700002ac4")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=62))
def test_fuzz_decode_returns_or_raises_beacon_error(data: bytes) -> None:
    try:
        structures = parse_ad(data)
    except HciError:
        return
    with contextlib.suppress(BeaconError):
        decode(structures)
