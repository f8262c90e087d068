"""Probe requests from radiotap frames; cross-checked against scapy's Dot11 layers, and fuzzed."""

from __future__ import annotations

import contextlib
import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wifi.probes import ProbeError, ProbeRequest, encode_probe, parse_radiotap_frame
from drivers.wifi.sources import read_radiotap_pcap, write_radiotap_pcap


def scapy_probe(mac: str, rssi: int, *, fcs: bool = False, extra_fields: bool = False) -> bytes:
    from scapy.layers.dot11 import Dot11, Dot11Elt, Dot11ProbeReq, RadioTap

    present = "TSFT+Flags+Rate+Channel+dBm_AntSignal" if extra_fields else "Flags+dBm_AntSignal"
    rt = RadioTap(present=present, Flags="FCS" if fcs else 0, dBm_AntSignal=rssi, ChannelFrequency=2437)
    frame = bytes(rt / Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=mac, addr3="ff:ff:ff:ff:ff:ff")
                  / Dot11ProbeReq() / Dot11Elt(ID=0, info=b"shop-guest"))
    return frame + (b"\xde\xad\xbe\xef" if fcs else b"")


@pytest.mark.parametrize(("fcs", "extra"), [(False, False), (True, True)])
def test_scapy_built_frames(fcs: bool, extra: bool) -> None:
    assert parse_radiotap_frame(scapy_probe("da:a1:19:00:11:22", -63, fcs=fcs, extra_fields=extra)) == \
        ProbeRequest("da:a1:19:00:11:22", -63)


def test_our_encoder_matches_what_we_parse_and_randomized_flag() -> None:
    p = parse_radiotap_frame(encode_probe("da:a1:19:00:11:22", -70))
    assert p == ProbeRequest("da:a1:19:00:11:22", -70) and p.randomized  # 0xda: locally administered
    assert not ProbeRequest("00:11:22:33:44:55", -50).randomized


def test_other_frames_are_ignored() -> None:
    from scapy.layers.dot11 import Dot11, Dot11Beacon, RadioTap

    beacon = bytes(RadioTap(present="dBm_AntSignal", dBm_AntSignal=-40) / Dot11(type=0, subtype=8) / Dot11Beacon())
    assert parse_radiotap_frame(beacon) is None


@pytest.mark.parametrize(("frame", "error"), [
    (b"\x01\x00\x08\x00\x00\x00\x00\x00", "version 0"),
    (struct.pack("<BBHI", 0, 0, 200, 0) + b"\x00" * 20, "radiotap length 200"),
    (struct.pack("<BBHI", 0, 0, 8, 0) + b"\x40\x00", "shorter than its header"),
    (struct.pack("<BBHI", 0, 0, 8, 1) + b"\x40" * 20, "fields run past"),
])
def test_malformed(frame: bytes, error: str) -> None:
    with pytest.raises(ProbeError, match=error):
        parse_radiotap_frame(frame)


def test_pcap_round_trip_and_bad_files() -> None:
    buf = io.BytesIO()
    write_radiotap_pcap(buf, [(1_700_000_000.5, encode_probe("00:11:22:33:44:55", -50))])
    buf.seek(0)
    ((ts, frame),) = list(read_radiotap_pcap(buf))
    assert ts == 1_700_000_000.5 and parse_radiotap_frame(frame) == ProbeRequest("00:11:22:33:44:55", -50)
    with pytest.raises(ValueError, match="not a pcap"):
        list(read_radiotap_pcap(io.BytesIO(b"nope")))
    with pytest.raises(ValueError, match="link type"):
        list(read_radiotap_pcap(io.BytesIO(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_returns_or_raises_probe_error(data: bytes) -> None:
    with contextlib.suppress(ProbeError):
        parse_radiotap_frame(data)
