"""The "BB … 7E" module family (MagicRF M100/QM100: JRD-4035, YRM100, R200 boards), from published frames.

Sources: M5Stack's documentation of the UHF RFID unit U107 (JRD-4035), "Communication protocol instruction
set" (single poll, multi-poll, stop, hardware version, set TX power); the C core of the PyPI package
`magicrf` (hex-in/libmagicrf src/lib/_protocol.h: frame types, error 0x15 "inventory fail / no tag");
m5stack/uiflow-micropython m5stack/libs/driver/jrd4035/__init__.py; and three real tag notices quoted in
public drivers (the M100 manual's example, an "RFID R200" C driver, a Chinese C driver), each of which
passes both the frame checksum and the tag's own CRC-16.
Note: despite the config id `r2000`, Impinj R2000 boards speak another protocol (0xA0 head + LRC).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rfid.base import FrameError, ReaderReply, TagReport
from drivers.rfid.epc import decode_sgtin
from drivers.rfid.r2000 import Emulator, Session, build_frame, tag_notice
from tests.drivers.rfid.helpers import drain, feed, splits, without_errors

H = bytes.fromhex
SINGLE_POLL = H("BB 00 22 00 00 22 7E")
MULTI_POLL_10000 = H("BB 00 27 00 03 22 27 10 83 7E")
STOP = H("BB 00 28 00 00 28 7E")
GET_VERSION = H("BB 00 03 00 01 00 04 7E")
MANUAL_NOTICE = H("BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 EF 7E")
R200_NOTICE = H("BB 02 22 00 11 C4 30 00 E2 00 00 1D 73 15 01 65 21 40 8F C6 B8 3E C2 7E")
CN_DRIVER_NOTICE = H("BB 02 22 00 11 CB 34 00 E2 00 47 1B B0 00 60 13 04 45 09 D0 95 82 D4 7E")
MODULE_INFO = H("BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 92 7E")
NO_TAG = H("BB 01 FF 00 01 15 16 7E")


def test_commands_match_the_documentation() -> None:
    assert build_frame(0x00, 0x22) == SINGLE_POLL
    assert build_frame(0x00, 0x27, H("22 27 10")) == MULTI_POLL_10000
    assert build_frame(0x00, 0x28) == STOP
    assert build_frame(0x00, 0x03, b"\x00") == GET_VERSION
    s = Session()
    s.start()
    assert s.data_to_send() == STOP + GET_VERSION
    s.poll()
    assert s.data_to_send() == SINGLE_POLL


def test_manual_tag_notice() -> None:
    (report,) = feed(Session(), [MANUAL_NOTICE])
    assert report == TagReport(H("30751FEB705C5904E3D50D70"), 1, -55)
    sgtin = decode_sgtin(report.epc)
    assert sgtin is not None and sgtin.uri == "urn:epc:id:sgtin:4717276.094564.21002259824"


def test_other_real_notices_and_module_info() -> None:
    assert feed(Session(), [R200_NOTICE + CN_DRIVER_NOTICE]) == [
        TagReport(H("E200001D7315016521408FC6"), 1, -60), TagReport(H("E200471BB0006013044509D0"), 1, -53)]
    (info,) = feed(Session(), [MODULE_INFO])
    assert isinstance(info, ReaderReply) and info.detail == "M100 26dBm V1.0"
    assert build_frame(0x01, 0x03, Emulator.INFO) == MODULE_INFO


def test_no_tag_is_a_reply() -> None:
    assert feed(Session(), [NO_TAG]) == [ReaderReply(0xFF, 0x15, True, "no tag")]


def test_every_chunking() -> None:
    data = MANUAL_NOTICE + NO_TAG + MANUAL_NOTICE
    expected = feed(Session(), [data])
    assert len(expected) == 3
    for chunks in splits(data):
        assert feed(Session(), chunks) == expected


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda f: f[:-2] + bytes([f[-2] ^ 1]) + f[-1:], "bad checksum"),
    (lambda f: f[:-1] + b"\x00", "no end byte 0x7E"),
])
def test_corruption_is_skipped(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    events = feed(Session(), [mutate(MANUAL_NOTICE) + NO_TAG])
    assert FrameError(reason, 1) in events
    assert without_errors(events)[-1] == ReaderReply(0xFF, 0x15, True, "no tag")


def test_notice_whose_pc_disagrees_with_its_length() -> None:
    bad = build_frame(0x02, 0x22, H("C9 40 00") + H("30751FEB705C5904E3D50D70") + H("3A76"))  # PC says 8 words
    (event,) = feed(Session(), [bad])
    assert isinstance(event, FrameError) and "malformed tag notice" in event.reason


def test_emulator_single_and_multi_poll() -> None:
    emu = Emulator()
    tags = [TagReport(H("30751FEB705C5904E3D50D70"), 1, -55), TagReport(H("E2000017221101441890"), 1, -70)]
    emu.field = tags
    s = Session()
    s.poll()
    emu.receive_data(s.data_to_send())
    emu.tick(None)
    s.receive_data(emu.data_to_send())
    assert drain(s) == tags
    active = Session(mode="active")
    active.start()
    emu.receive_data(active.data_to_send())
    emu.tick(None)
    assert emu.multi_poll
    emu.tick(tags)
    active.receive_data(emu.data_to_send())
    assert [e for e in drain(active) if isinstance(e, TagReport)] == tags
    assert feed(Session(), [tag_notice(tags[0])]) == [tags[0]]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_fuzz_never_raises(data: bytes) -> None:
    feed(Session(), [data])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.binary(max_size=60))
def test_fuzz_good_frames_between_noise(before: bytes, after: bytes) -> None:
    s = Session()
    events = feed(s, [before + MANUAL_NOTICE + after + MANUAL_NOTICE])
    s.line_idle()
    events += drain(s)
    assert TagReport(H("30751FEB705C5904E3D50D70"), 1, -55) in events
