"""EM4100 ASCII readers (RDM6300, ID-12LA), from published frames.

Sources: the Seeed Studio wiki page "125Khz RFID module - UART" (frame 02 30 31 30 30 30 37 33 34 45 30 44 32 03);
mad-tinkerer/python-rdm6300 rdm6300/test_reader.py (PyPI `rdm6300`: 67003B51C6CB valid, 68003B51C6CB invalid);
ID Innovations "ID-2/12/20 LA Series Datasheet" section 4, Data Formats (ASCII 0C000621A58E, CR LF before ETX;
the datasheet's text says checksum "6E" in one place, but the XOR of its own example is 8E). The format also
matches arduino12/rdm6300 src/rdm6300.cpp and esphome/esphome esphome/components/rdm6300/rdm6300.cpp.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rfid.base import FrameError, TagReport
from drivers.rfid.em4100 import Emulator, Session, checksum, encode_frame
from tests.drivers.rfid.helpers import feed, splits, without_errors

SEEED = bytes.fromhex("02 30 31 30 30 30 37 33 34 45 30 44 32 03")
RDM6300_VALID = b"\x0267003B51C6CB\x03"
RDM6300_BAD_CHECKSUM = b"\x0268003B51C6CB\x03"
ID12LA = b"\x020C000621A58E\r\n\x03"


@pytest.mark.parametrize(("frame", "uid"), [
    (SEEED, "01000734E0"), (RDM6300_VALID, "67003B51C6"), (ID12LA, "0C000621A5")])
def test_published_frames(frame: bytes, uid: str) -> None:
    assert feed(Session(), [frame]) == [TagReport(bytes.fromhex(uid))]


def test_encoder_reproduces_them() -> None:
    assert encode_frame(bytes.fromhex("01000734E0")) == SEEED
    assert encode_frame(bytes.fromhex("0C000621A5"), crlf=True) == ID12LA
    assert checksum(bytes.fromhex("67003B51C6")) == 0xCB


def test_bad_checksum_is_skipped_and_counted() -> None:
    events = feed(Session(), [RDM6300_BAD_CHECKSUM + RDM6300_VALID])
    assert FrameError("bad checksum", 1) in events
    assert without_errors(events) == [TagReport(bytes.fromhex("67003B51C6"))]


@pytest.mark.parametrize("junk", [b"\x02GGGGGGGGGGGG\x03", b"\x02" + b"0" * 20, b"hello", b"\x0201\x03"])
def test_garbage_then_a_good_frame(junk: bytes) -> None:
    events = feed(Session(), [junk + SEEED])
    assert any(isinstance(e, FrameError) for e in events)
    assert without_errors(events) == [TagReport(bytes.fromhex("01000734E0"))]


def test_every_chunking() -> None:
    data = SEEED + ID12LA + RDM6300_VALID
    expected = feed(Session(), [data])
    assert len(expected) == 3
    for chunks in splits(data):
        assert feed(Session(), chunks) == expected


def test_session_needs_no_commands_and_emulator_ignores_input() -> None:
    s = Session()
    s.start()
    assert s.data_to_send() == b"" and not s.polled and not s.answers_start
    emu = Emulator(crlf=True)
    emu.receive_data(b"anything")
    emu.tick([TagReport(bytes.fromhex("3034B7DBE4000EC0000003EC"))])
    assert emu.data_to_send() == encode_frame(bytes.fromhex("C0000003EC"), crlf=True)


def test_encode_rejects_wrong_uid_length() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"\x01\x02")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_never_raises(data: bytes) -> None:
    feed(Session(), [data])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_fuzz_good_frame_between_noise_is_found(before: bytes, after: bytes) -> None:
    tags = [e for e in feed(Session(), [before + SEEED + after + SEEED]) if isinstance(e, TagReport)]
    assert TagReport(bytes.fromhex("01000734E0")) in tags
