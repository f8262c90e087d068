"""pcap and pcapng reading (drivers/capture.py) from files made by others (tests/drivers/wifi/data/README.md says
where each came from), checked against scapy's reader and pcap-parser's own assertions, then corrupted."""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.capture import CAPTURE_MAGICS, CaptureError, read_pcap

DATA = Path(__file__).parent / "wifi" / "data"
ETHERNET, RADIOTAP = 1, 127
MAX_RECORD = 262144


def records(raw: bytes, linktypes: frozenset[int] = frozenset({ETHERNET, RADIOTAP}),
            max_record: int = MAX_RECORD) -> list[tuple[float, bytes]]:
    f = io.BytesIO(raw)
    _, recs = read_pcap(f, f.read(24), set(linktypes), "Ethernet or radiotap", max_record)
    return list(recs)


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def scapy_records(name: str) -> list[tuple[float, bytes]]:
    from scapy.utils import rdpcap

    return [(float(p.time), bytes(p)) for p in rdpcap(str(DATA / name))]


@pytest.mark.parametrize("name", ["pcap-parser-test001-be.pcapng", "pcap-parser-test001-le.pcapng",
                                  "scapy-ikev2_nat_t.pcapng", "aircrack-ng-wpa3-psk.pcapng",
                                  "aircrack-ng-test1.pcapng", "aircrack-ng-test1.pcap"])
def test_same_records_as_scapy(name: str) -> None:
    ours, theirs = records(read(name)), scapy_records(name)
    assert len(ours) == len(theirs) > 0
    assert [d for _, d in ours] == [d for _, d in theirs]
    assert all(abs(a - b) < 1e-6 for (a, _), (b, _) in zip(ours, theirs, strict=True))


def test_nanosecond_if_tsresol() -> None:
    """scapy reads the first packet of this if_tsresol=9 file as 1623613953.582635172."""
    assert records(read("scapy-ikev2_nat_t.pcapng"))[0][0] == pytest.approx(1623613953.582635172, abs=1e-6)


@pytest.mark.parametrize("test", ["test001", "test016"])
def test_both_byte_orders_give_the_same_packets(test: str) -> None:
    be, le = records(read(f"pcap-parser-{test}-be.pcapng")), records(read(f"pcap-parser-{test}-le.pcapng"))
    assert be == le and len(be) == 4


def test_simple_and_enhanced_packet_blocks_where_pcap_parser_finds_them() -> None:
    """pcap-parser tests/pcapng.rs 105-155: an EPB at test001 bytes 148-495 and an SPB at test016 bytes 1020-1351,
    each with 314 bytes of packet data (the rest is padding). test016 mixes NRB, SPB and EPB."""
    raw = read("pcap-parser-test001-be.pcapng")
    assert records(raw)[0][1] == raw[148 + 28:148 + 28 + 314]
    raw = read("pcap-parser-test016-be.pcapng")
    recs = records(raw)
    assert recs[2][1] == raw[1020 + 12:1020 + 12 + 314]
    assert [len(d) for _, d in recs] == [314, 342, 314, 342]
    assert recs[2][0] == recs[1][0]  # a simple packet has no timestamp: the previous packet's time
    assert [len(d) for _, d in records(read("pcap-parser-test010-le.pcapng"))] == [314, 342, 314, 342]


def test_two_sections_of_different_byte_orders() -> None:
    raw = read("pcap-parser-test001-le.pcapng") + read("pcap-parser-test001-be.pcapng")
    assert len(records(raw)) == 8


def test_file_without_interfaces_and_wrong_link_type() -> None:
    with pytest.raises(CaptureError, match="without an interface"):
        records(read("pcap-parser-test017-le.pcapng"))
    with pytest.raises(CaptureError, match="link type 1 is not"):
        records(read("pcap-parser-test001-le.pcapng"), frozenset({RADIOTAP}))


def test_capture_magics() -> None:
    assert read("aircrack-ng-test1.pcapng")[:4] in CAPTURE_MAGICS and read("aircrack-ng-test1.pcap")[:4] in CAPTURE_MAGICS


# Hand-built blocks (little-endian) for the cases no real file has.
def block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int = RADIOTAP, options: bytes = b"") -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 0) + options)


def epb(ts: int, data: bytes, iface: int = 0, caplen: int | None = None) -> bytes:
    n = len(data) if caplen is None else caplen
    return block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, n, len(data)) + data)


def option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def test_power_of_two_resolution_and_offset() -> None:
    opts = option(9, bytes([0x80 | 10])) + option(14, struct.pack("<q", 1_700_000_000)) + option(0, b"")
    ((ts, data),) = records(SHB + idb(options=opts) + epb(2048, b"abc"))
    assert (ts, data) == (1_700_000_002.0, b"abc")


@pytest.mark.parametrize(("raw", "error"), [
    (SHB[:20], "section header truncated"),
    (SHB[:8] + b"\x01\x02\x03\x04" + SHB[12:] + idb(), "byte-order magic"),
    (SHB[:12] + struct.pack("<H", 2) + SHB[14:] + idb(), "major version 2"),
    (SHB, "without an interface"),
    (SHB + epb(0, b"x"), "packet before any interface"),
    (SHB + idb() + epb(0, b"x", iface=3), "interface 3, which was never described"),
    (SHB + idb() + epb(0, b"x", caplen=4000), "packet of 4000 bytes"),
    (SHB + idb() + struct.pack("<II", 6, 0x7FFFFFF0), "at most"),  # no 2 GB allocation
    (SHB + idb() + struct.pack("<II", 6, 30) + b"\0" * 22, "block length of 30"),
    (SHB + idb() + epb(0, b"abcd")[:-4] + struct.pack("<I", 99), "trailing block length"),
    (SHB + idb() + epb(0, b"abcd")[:20], "truncated"),
    (SHB + idb() + struct.pack("<II", 4, 0xFFFFFFF0) + b"\0" * 100, "truncated"),  # skipped, streamed, not kept
    (SHB + idb() + block(2, b"\0" * 20), "obsolete"),
    (SHB + idb() + idb(ETHERNET), "interface 1 has link type 1"),
    (SHB + idb() + SHB + idb(ETHERNET), "link type 1 after 127"),
    (SHB + idb(options=struct.pack("<HH", 2, 200)), "option runs past"),
])
def test_corrupt_files(raw: bytes, error: str) -> None:
    with pytest.raises(CaptureError, match=error):
        records(raw, frozenset({RADIOTAP}), max_record=65536)


def test_records_before_the_corruption_are_read() -> None:
    raw = read("aircrack-ng-wpa3-psk.pcapng")
    f = io.BytesIO(raw[:-10])
    _, recs = read_pcap(f, f.read(24), {RADIOTAP}, "radiotap", MAX_RECORD)
    got = []
    with pytest.raises(CaptureError, match="truncated"):
        for rec in recs:
            got.append(rec)
    assert len(got) == len(records(raw)) - 1


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_damaged_real_files_read_or_raise_capture_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["aircrack-ng-wpa3-psk.pcapng", "pcap-parser-test016-be.pcapng",
                                      "aircrack-ng-wpa3-psk.pcap"]))
    raw = bytearray(read(name))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    with contextlib.suppress(CaptureError):
        records(bytes(raw))
