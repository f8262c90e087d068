"""UHFReader18 / CF-RU5102 codec, from published frames.

Sources of the byte strings:
  * CF-RU5102 User's Manual V1.2 (schotek/rfid-chafon-cf-ru5102, documents/…V1.2.doc): frame layout,
    CRC reference code (section 3.2), the 0xFB "no tag" status;
  * mgaffigan/ChafonReaderApi Rmg.Chafon.ReaderApi/Ru5102/Frame.cs: a real RU5102 Get Reader Info answer;
  * wabson/chafon-rfid tests/test_uhfreader18.py: RESP_TAGS_1, RESP_TAGS_3, RESP_MULTIPLE_TAGS;
  * xynogen/uhfreader18 tests/test_protocol.py and docs/PROTOCOL.md: the Get Reader Info command and a
    captured 0xEE active-mode frame.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rfid.base import FrameError, ReaderReply, TagReport
from drivers.rfid.simulator import converse
from drivers.rfid.uhfreader18 import (
    Emulator,
    Session,
    _fast_crc16,
    build_command,
    build_response,
    crc16,
    parse_epc_list,
)
from tests.drivers.rfid.helpers import drain, feed, splits, without_errors

H = bytes.fromhex

GET_READER_INFO = H("04 00 21 D9 6A")  # xynogen test_protocol.py
RU5102_READER_INFO = H("0d 00 21 00 01 17 08 03 3e 00 0d 1e b1 f1")  # mgaffigan Frame.cs (real RU5102)
RESP_TAGS_1 = H("13000103010c0000000000000000000003133f39")  # wabson
RESP_TAGS_3 = H("13000103010c49440000000000000a000334a5fb")  # wabson
RESP_MULTIPLE_TAGS = H("20000103020c0000000000000000000003130c0000000000000000000003149ac9")  # wabson
ACTIVE_CAPTURE = H("11 00 EE 00 20 00 70 8C 2B 38 0B 2D 00 00 00 00 E0 56")  # xynogen PROTOCOL.md capture
SET_ANSWER_MODE = H("0A 00 35 00 00 00 00 00 00 C1 8C")  # 0x35 with six zero bytes (V2.0 8.4.9)


def test_crc_catalogue_check_value() -> None:
    # CRC-16/MCRF4XX, the algorithm of the manual's uiCrc16Cal: check value 0x6F91
    assert crc16(b"123456789") == 0x6F91


@given(st.binary(max_size=64))
def test_table_crc_equals_the_manual_code(data: bytes) -> None:
    assert _fast_crc16(data) == crc16(data)


@pytest.mark.parametrize("frame", [GET_READER_INFO, RU5102_READER_INFO, RESP_TAGS_1, RESP_TAGS_3,
                                   RESP_MULTIPLE_TAGS, ACTIVE_CAPTURE, SET_ANSWER_MODE])
def test_published_frames_have_a_zero_crc_residue(frame: bytes) -> None:
    assert frame[0] == len(frame) - 1
    assert crc16(frame) == 0


def test_commands_we_send() -> None:
    assert build_command(0x00, 0x21) == GET_READER_INFO
    assert build_command(0x00, 0x35, bytes(6)) == SET_ANSWER_MODE
    session = Session()
    session.start()
    assert session.data_to_send() == GET_READER_INFO + SET_ANSWER_MODE
    session.poll()
    assert session.data_to_send() == build_command(0, 0x01)


def test_inventory_responses() -> None:
    s = Session()
    s.poll()
    s.data_to_send()
    assert feed(s, [RESP_TAGS_1]) == [TagReport(H("000000000000000000000313"))]
    assert feed(Session(), [RESP_TAGS_3]) == [TagReport(H("49440000000000000a000334"))]
    assert feed(Session(), [RESP_MULTIPLE_TAGS]) == [
        TagReport(H("000000000000000000000313")), TagReport(H("000000000000000000000314"))]


def test_no_tag_and_reader_info() -> None:
    (no_tag,) = feed(Session(), [build_response(0, 0x01, 0xFB)])
    assert no_tag == ReaderReply(0x01, 0xFB, True, "inventory: no tag")
    (info,) = feed(Session(), [RU5102_READER_INFO])
    assert isinstance(info, ReaderReply) and info.ok and info.detail == "firmware 1.23 type 0x08"


def test_active_mode_capture() -> None:
    (report,) = feed(Session(mode="active"), [ACTIVE_CAPTURE])
    assert report == TagReport(H("2000708C2B380B2D00000000"))


def test_illegal_command_reply() -> None:
    (reply,) = feed(Session(), [build_response(0, 0x00, 0xFE)])
    assert isinstance(reply, ReaderReply) and not reply.ok


def test_more_frames_keep_the_inventory_open() -> None:
    s = Session()
    s.poll()
    assert s.data_to_send()
    s.poll()
    assert s.data_to_send() == b"", "no second inventory while the first is running"
    feed(s, [RESP_TAGS_1])  # status 0x03: more frames follow
    s.poll()
    assert s.data_to_send() == b""
    feed(s, [build_response(0, 0x01, 0x01, H("01 04 DEADBEEF"))])
    s.poll()
    assert s.data_to_send() == build_command(0, 0x01)


def test_every_chunking_gives_the_same_events() -> None:
    data = RESP_MULTIPLE_TAGS + ACTIVE_CAPTURE + build_response(0, 0x01, 0xFB)
    expected = feed(Session(), [data])
    assert len(expected) == 4
    for chunks in splits(data):
        assert feed(Session(), chunks) == expected


def test_bad_crc_resyncs_on_the_next_frame() -> None:
    broken = bytearray(RESP_TAGS_3)
    broken[7] ^= 0x01
    s = Session()
    events = feed(s, [bytes(broken) + RESP_TAGS_1 + RESP_TAGS_1])
    s.line_idle()  # a stray length byte may hold back the next frame until the line goes quiet
    events += drain(s)
    assert any(isinstance(e, FrameError) and e.reason == "bad CRC" for e in events)
    assert without_errors(events) == [TagReport(H("000000000000000000000313"))] * 2


def test_a_corrupt_length_is_resolved_when_the_line_goes_idle() -> None:
    broken = bytearray(RESP_TAGS_3)
    broken[7] = 0xBB  # a byte that reads as "187 bytes follow" from address 0
    s = Session()
    events = feed(s, [bytes(broken) + RESP_TAGS_1])
    assert without_errors(events) == []  # held back: the codec waits for 187 bytes
    s.line_idle()  # the caller saw the line go quiet
    events = drain(s)
    assert any(isinstance(e, FrameError) and "idle" in e.reason for e in events)
    assert without_errors(events) == [TagReport(H("000000000000000000000313"))]
    assert len(s._rx) == 0


def test_frames_from_another_address_are_skipped() -> None:
    other = build_response(0x05, 0x01, 0x01, H("01 04 DEADBEEF"))
    mine = build_response(0x00, 0x01, 0x01, H("01 04 CAFEBABE"))
    events = feed(Session(address=0), [other + mine])
    assert without_errors(events) == [TagReport(H("CAFEBABE"))]
    assert feed(Session(address=0xFF), [other]) == [TagReport(H("DEADBEEF"))]  # broadcast hears all


@pytest.mark.parametrize(("data", "why"), [
    (H("02 04 AA BB"), "says 2 tags, holds 1"),
    (H("01 09 AA"), "EPC length 9 does not fit"),
    (H("01 00"), "EPC length 0"),
    (H("01 01 AA FF"), "byte after the last EPC"),
])
def test_malformed_inventory_with_good_crc(data: bytes, why: str) -> None:
    (event,) = feed(Session(), [build_response(0, 0x01, 0x01, data)])
    assert isinstance(event, FrameError) and "malformed inventory" in event.reason, why
    with pytest.raises(ValueError):
        parse_epc_list(data)


def test_emulator_answer_mode_with_many_tags() -> None:
    session, emulator = Session(), Emulator()
    session.start()
    converse(session, emulator)
    assert session.reader_info is not None and emulator.read_mode == 0
    emulator.field = [TagReport(os.urandom(12)) for _ in range(20)]
    session.poll()
    events = converse(session, emulator)
    assert [e for e in events if isinstance(e, TagReport)] == list(emulator.field)


def test_emulator_scan_mode_streams_and_ignores_inventory_commands() -> None:
    session, emulator = Session(mode="active"), Emulator()
    session.start()
    converse(session, emulator)
    assert emulator.read_mode == 1
    tags = [TagReport(os.urandom(12)) for _ in range(3)]
    emulator.tick(tags)
    session.receive_data(emulator.data_to_send())
    assert drain(session) == tags
    emulator.receive_data(build_command(0, 0x01))
    emulator.tick(None)
    assert emulator.data_to_send() == b""  # G2 commands are not answered in scan mode
    session.pause()
    emulator.receive_data(session.data_to_send())
    emulator.tick(None)
    assert emulator.read_mode == 0


def test_emulator_rejects_unknown_commands_and_other_addresses() -> None:
    emulator = Emulator(address=0)
    emulator.receive_data(build_command(0, 0x99) + build_command(7, 0x21))
    emulator.tick(None)
    assert emulator.data_to_send() == build_response(0, 0x00, 0xFE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    feed(Session(), [data])
    feed(Session(address=0xFF), [data])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_noise_around_good_frames(data: st.DataObject) -> None:
    noise = data.draw(st.binary(max_size=60))
    cut = data.draw(st.integers(0, len(noise)))
    # the line goes on after the noise: a fake length byte may hold back up to 255 bytes
    stream = noise[:cut] + RESP_TAGS_3 + noise[cut:] + RESP_TAGS_1
    s = Session(address=0xFF)
    events = feed(s, [stream])
    s.line_idle()
    events += drain(s)
    tags = [e for e in events if isinstance(e, TagReport)]
    assert TagReport(H("000000000000000000000313")) in tags
