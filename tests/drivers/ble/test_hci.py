"""HCI LE advertising reports and capture files, from bytes; cross-checked against scapy's own encoder."""

from __future__ import annotations

import contextlib
import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.captures import CapturedPacket, CaptureError, read_capture, write_btsnoop
from drivers.ble.hci import HciError, encode_adv_report, parse_ad, parse_event


def scapy_report(addr: str, rssi: int, ad: bytes, atype: int = 1, etype: int = 3) -> bytes:
    """The same event built by an independent implementation: scapy.layers.bluetooth."""
    from scapy.layers.bluetooth import (
        HCI_Event_Hdr,
        HCI_Event_LE_Meta,
        HCI_Hdr,
        HCI_LE_Meta_Advertising_Report,
        HCI_LE_Meta_Advertising_Reports,
    )
    from scapy.packet import Raw

    report = HCI_LE_Meta_Advertising_Report(addr=addr, addr_type=atype, type=etype, data=[Raw(ad)], rssi=rssi)
    return bytes(HCI_Hdr() / HCI_Event_Hdr() / HCI_Event_LE_Meta() / HCI_LE_Meta_Advertising_Reports(reports=[report]))


def test_our_encoder_and_scapys_agree_and_decode_back() -> None:
    ad = bytes.fromhex("020106") + bytes.fromhex("1aff4c000215") + bytes(16) + bytes.fromhex("00010002c5")
    ours = encode_adv_report("C0:11:22:33:44:55", ad, -70)
    assert ours == scapy_report("c0:11:22:33:44:55", -70, ad)
    (r,) = parse_event(ours)
    assert (r.address, r.address_type, r.event_type, r.rssi, r.data) == ("C0:11:22:33:44:55", "random", 3, -70, ad)
    assert [t for t, _ in r.ad] == [0x01, 0xFF]


def test_several_reports_in_one_event() -> None:
    one = encode_adv_report("C0:00:00:00:00:01", b"\x02\x01\x06", -40)[5:]  # past H4, code, length, subevent, num
    two = encode_adv_report("C0:00:00:00:00:02", b"", -90)[5:]
    body = bytes((0x02, 2)) + one + two
    event = bytes((0x04, 0x3E, len(body))) + body
    reports = parse_event(event)
    assert [(r.address, r.rssi) for r in reports] == [("C0:00:00:00:00:01", -40), ("C0:00:00:00:00:02", -90)]


def test_extended_report() -> None:
    # Core 5.x Vol 4 Part E 7.7.65.13: event type (2), address type, address, primary PHY, secondary PHY,
    # SID, TX power, RSSI, periodic interval (2), direct address type, direct address, data length, data.
    data = bytes.fromhex("020106")
    report = (b"\x13\x00" + b"\x01" + bytes.fromhex("554433221100") + b"\x01\x00\xff" + bytes((0xF4,))
              + bytes((0xC4,)) + b"\x00\x00" + b"\x00" + bytes(6) + bytes((len(data),)) + data)
    body = b"\x0d\x01" + report
    (r,) = parse_event(bytes((0x04, 0x3E, len(body))) + body)
    assert (r.address, r.tx_power, r.rssi, r.extended, r.data) == ("00:11:22:33:44:55", -12, -60, True, data)


def test_other_events_are_ignored() -> None:
    assert parse_event(bytes.fromhex("040e0401030c00")) == []  # Command Complete (Reset)
    assert parse_event(bytes.fromhex("0101030c00")) == []  # a command, not an event
    assert parse_event(bytes.fromhex("043e020100"), ) == []  # LE Connection Complete-ish subevent 0x01


@pytest.mark.parametrize(("packet", "error"), [
    ("043e", "shorter than its header"),
    ("043e05020100", "says 5 parameter bytes"),
    ("043e020200", "Num_Reports 0"),
    ("043e0402010301", "truncated in its header"),
    ("043e0d020103015544332211c0" + "05" + "0201", "truncated"),
])
def test_malformed_events(packet: str, error: str) -> None:
    with pytest.raises(HciError, match=error):
        parse_event(bytes.fromhex(packet))


def test_ad_structures() -> None:
    assert parse_ad(bytes.fromhex("020106030302fe")) == ((0x01, b"\x06"), (0x03, b"\x02\xfe"))
    assert parse_ad(bytes.fromhex("02010600000000")) == ((0x01, b"\x06"),)  # zero length ends the data
    with pytest.raises(HciError, match="runs past"):
        parse_ad(bytes.fromhex("05ff4c00"))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_event_returns_or_raises_hci_error(data: bytes) -> None:
    try:
        parse_event(data)
        parse_event(b"\x04\x3e" + bytes((len(data),)) + data)
    except HciError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_events(data: st.DataObject) -> None:
    packet = bytearray(encode_adv_report("C0:11:22:33:44:55", bytes.fromhex("020106"), -70))
    for _ in range(data.draw(st.integers(1, 4))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(HciError):
        parse_event(bytes(packet))


def test_btsnoop_round_trip_and_datalink_1001() -> None:
    packets = [CapturedPacket(1_700_000_000.25, encode_adv_report("C0:00:00:00:00:01", b"", -50))]
    buf = io.BytesIO()
    write_btsnoop(buf, packets)
    raw = buf.getvalue()
    assert raw[:8] == b"btsnoop\x00" and struct.unpack(">II", raw[8:16]) == (1, 1002)
    buf.seek(0)
    assert list(read_capture(buf)) == packets
    # the same record in an un-encapsulated (1001) file: the H4 type comes from the flags (event = 0x03)
    h = packets[0].h4
    rec = struct.pack(">IIIIq", len(h) - 1, len(h) - 1, 0x03, 0, struct.unpack(">q", raw[32:40])[0]) + h[1:]
    out = list(read_capture(io.BytesIO(b"btsnoop\x00" + struct.pack(">II", 1, 1001) + rec)))
    assert out == packets


def test_btmon_monitor_format_2001() -> None:
    # BlueZ btsnoop.h BTSNOOP_FORMAT_MONITOR: flags = index << 16 | opcode (3 = event), data without the H4 byte.
    event = encode_adv_report("C0:00:00:00:00:01", b"", -50)
    head = b"btsnoop\x00" + struct.pack(">II", 1, 2001)
    note = struct.pack(">IIIIq", 5, 5, 12, 0, 0x00DCDDB30F2F8000) + b"hello"  # a system note: skipped
    rec = struct.pack(">IIIIq", len(event) - 1, len(event) - 1, (0 << 16) | 3, 0,
                      0x00DCDDB30F2F8000 + 1_700_000_000_000_000) + event[1:]
    (p,) = list(read_capture(io.BytesIO(head + note + rec)))
    assert p.h4 == event and p.ts == 1_700_000_000.0


def test_pcap_with_phdr() -> None:
    h4 = encode_adv_report("C0:00:00:00:00:01", b"", -50)
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 201)
    rec = struct.pack("<IIII", 1_700_000_000, 500_000, len(h4) + 4, len(h4) + 4) + b"\x00\x00\x00\x01" + h4
    (p,) = list(read_capture(io.BytesIO(head + rec)))
    assert p.h4 == h4 and p.ts == 1_700_000_000.5


@pytest.mark.parametrize(("data", "error"), [
    (b"hello world, not a capture", "neither a btsnoop nor a pcap/pcapng"),
    (b"btsnoop\x00" + struct.pack(">II", 2, 1002), "version 2"),
    (b"btsnoop\x00" + struct.pack(">II", 1, 1002) + b"\x00\x00", "record header truncated"),
    (b"btsnoop\x00" + struct.pack(">II", 1, 1002) + struct.pack(">IIIIq", 10, 10, 3, 0, 0) + b"\x04", "record truncated"),
    (b"btsnoop\x00" + struct.pack(">II", 1, 1002) + struct.pack(">IIIIq", 10**7, 10**7, 3, 0, 0), "record of"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1), "link type 1"),
])
def test_bad_captures(data: bytes, error: str) -> None:
    with pytest.raises(CaptureError, match=error):
        list(read_capture(io.BytesIO(data)))


def test_pcapng_with_h4() -> None:
    """What dumpcap writes by default (pcapng: SHB, IDB of link type 201, EPB), read like a pcap."""
    from tests.drivers.test_capture import block, epb, idb

    h4 = encode_adv_report("C0:00:00:00:00:02", b"", -61)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    raw = shb + idb(linktype=201) + epb(1_700_000_000_250_000, b"\x00\x00\x00\x01" + h4)
    (p,) = list(read_capture(io.BytesIO(raw)))
    assert p.h4 == h4 and p.ts == 1_700_000_000.25
