"""Probe requests from radiotap frames; cross-checked against scapy's Dot11 layers on captures made by others
(data/README.md: aircrack-ng's radiotap test captures and their pcapng conversions), and fuzzed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.capture import FileReplay
from drivers.wifi.probes import ProbeError, ProbeRequest, encode_probe, parse_radiotap_frame
from drivers.wifi.sources import make_probe_source, read_radiotap_pcap, write_radiotap_pcap

DATA = Path(__file__).parent / "data"


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
    (struct.pack("<BBHI", 0, 0, 8, 0) + b"\x40", "frame control"),
    (struct.pack("<BBHI", 0, 0, 8, 0) + b"\x40\x00" + b"\xff" * 14, "24-byte management header"),
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


def test_control_frames_are_other_frames_not_malformed() -> None:
    """A 10-byte ACK or CTS, a 16-byte RTS (type 1) is a whole frame, shorter than a management header."""
    from scapy.layers.dot11 import Dot11, RadioTap

    for subtype, size in ((13, 10), (12, 10), (11, 16)):
        frame = bytes(RadioTap(present="dBm_AntSignal", dBm_AntSignal=-40)
                      / Dot11(type=1, subtype=subtype, addr1="00:11:22:33:44:55",
                              addr2="00:11:22:33:44:66" if size == 16 else None))
        assert len(frame) - 9 == size and parse_radiotap_frame(frame) is None


def scan(path: Path) -> tuple[list[ProbeRequest], int, int]:
    """Probe requests, other frames and malformed frames in a radiotap capture, as the agent counts them."""
    probes, others, malformed = [], 0, 0
    with open(path, "rb") as f:
        for _ts, frame in read_radiotap_pcap(f):
            try:
                p = parse_radiotap_frame(frame)
            except ProbeError:
                malformed += 1
                continue
            if p is None:
                others += 1
            else:
                probes.append(p)
    return probes, others, malformed


def scapy_scan(path: Path) -> tuple[list[ProbeRequest], int]:
    from scapy.layers.dot11 import Dot11, Dot11ProbeReq, RadioTap
    from scapy.utils import rdpcap

    packets = rdpcap(str(path))
    probes = [ProbeRequest(p[Dot11].addr2, p[RadioTap].dBm_AntSignal) for p in packets if p.haslayer(Dot11ProbeReq)]
    return probes, sum(1 for p in packets if p.haslayer(Dot11) and p[Dot11].type == 1)


@pytest.mark.parametrize(("name", "n_probes", "n_control"), [
    ("aircrack-ng-wpa3-psk.pcap", 1, 11), ("aircrack-ng-wpa3-psk.pcapng", 1, 11),
    ("aircrack-ng-test1.pcap", 5, 0), ("aircrack-ng-test1.pcapng", 5, 0),
    ("aircrack-ng-80211ad_beacon.pcap", 0, 0),
])
def test_real_captures_count_like_scapy(name: str, n_probes: int, n_control: int) -> None:
    probes, others, malformed = scan(DATA / name)
    theirs, control = scapy_scan(DATA / name)
    assert probes == theirs and (len(probes), control) == (n_probes, n_control)
    assert malformed == 0 and others >= control


@pytest.mark.parametrize("name", ["aircrack-ng-wpa3-psk", "aircrack-ng-test1"])
def test_pcapng_gives_the_same_frames_as_pcap(name: str) -> None:
    with open(DATA / f"{name}.pcap", "rb") as a, open(DATA / f"{name}.pcapng", "rb") as b:
        assert list(read_radiotap_pcap(a)) == list(read_radiotap_pcap(b))


async def test_replay_source_plays_a_pcapng_file() -> None:
    loop = asyncio.get_running_loop()
    frames: list[bytes] = []
    states: list[tuple[str, str | None]] = []
    path = DATA / "aircrack-ng-wpa3-psk.pcapng"
    source = make_probe_source(f"replay:{path}?fast", loop, lambda _ts, frame: frames.append(frame),
                               lambda state, reason: states.append((state, reason)))
    assert isinstance(source, FileReplay)
    source.start()
    try:
        async with asyncio.timeout(10):
            while len(frames) < 24:
                await asyncio.sleep(0.01)
    finally:
        source.stop()
    assert states[0] == ("ok", None) and sum(parse_radiotap_frame(f) is not None for f in frames) == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_returns_or_raises_probe_error(data: bytes) -> None:
    with contextlib.suppress(ProbeError):
        parse_radiotap_frame(data)
