"""ThingMagic Mercury codec, from captured bytes.

Frames marked LOG are copied from the URA <-> M6e Nano communication logs that
SparkFun shipped in sparkfun/SparkFun_Simultaneous_RFID_Tag_Reader_Library at
commit 85fe502 ("Example Communication Logs/", e.g. "1-Connect to serial
port.txt", "3-Ant Select - Reading.txt", "TagDecoding/Tag ID Packet
Decoding-2 1545.txt"); the CRC is MercuryAPI's tm_crc
(c/src/api/serial_reader_l3.c, MercuryAPI 1.35.1.43).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rfid.base import FrameError, ReaderReply, TagReport
from drivers.rfid.mercury import (
    Emulator,
    Session,
    build_command,
    build_response,
    encode_record,
    gen2_crc,
    parse_record,
    tm_crc,
)
from drivers.rfid.simulator import converse
from tests.drivers.rfid.helpers import drain, feed, splits, without_errors

H = bytes.fromhex

# LOG "1-Connect to serial port.txt"
GET_VERSION = H("FF 00 03 1D 0C")
VERSION_REPLY = H("FF 14 03 00 00 14 12 08 00 30 00 00 02 20 15 03 10 01 03 01 47 00 00 00 10 EB FF")
GET_PROGRAM_REPLY = H("FF 01 0C 00 00 52 63 03")
SET_BAUD_115200 = H("FF 04 06 00 01 C2 00 A4 60")
# LOG "2-Select region.txt"
SET_REGION_NA2 = H("FF 01 97 0D 4B B0")
SET_REGION_REPLY = H("FF 00 97 00 00 77 9E")
# LOG "3-Ant Select - Reading.txt"
START_READING = H("FF 10 2F 00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 01 FF DD 2B")
START_READING_REPLY = H("FF 04 2F 00 00 01 22 00 00 6D C3")
TAG_12_BYTE_EPC = H(
    "FF 28 22 00 00 10 00 1B 01 FF 01 01 C9 11 0E 08 30 00 00 00 13 00 00 05 00 00 0F 00 80 30 00"
    " E2 00 10 26 76 0E 01 79 15 90 71 25 19 85 57 97"
)
TAG_4_BYTE_EPC = H(
    "FF 20 22 00 00 10 00 1B 01 FF 01 01 C7 11 0E 08 30 00 00 00 0F 00 00 05 00 00 0F 00 40 10 00"
    " 59 6F 59 6F F3 13 89 90"
)
KEEP_ALIVE = H("FF 00 22 04 00 84 E0")
STOP_READING = H("FF 03 2F 00 00 02 5E 86")
# LOG "TagDecoding/Tag ID Packet Decoding-2 1545.txt": a polled inventory of two tags
READ_MULTIPLE_REPLY_2 = H("FF 07 22 00 00 00 00 13 00 00 00 02 8B 5B")
TAG_BUFFER_REPLY_2 = H(
    "FF 40 29 00 00 01 FF 00 02"
    " 0B DF 11 0E 13 E8 00 00 00 08 00 00 05 00 00 0F 00 80 30 00 00 00 00 00 00 00 00 00 00 00 15 45 E9 4A"
    " 01 C4 11 0E 13 E8 00 00 00 0B 00 00 05 00 00 0F 00 40 10 00 59 6F 59 6F F3 13"
    " 64 10"
)


@pytest.mark.parametrize(
    "frame",
    [GET_VERSION, VERSION_REPLY, GET_PROGRAM_REPLY, SET_BAUD_115200, SET_REGION_NA2, SET_REGION_REPLY,
     START_READING, START_READING_REPLY, TAG_12_BYTE_EPC, TAG_4_BYTE_EPC, KEEP_ALIVE, STOP_READING,
     READ_MULTIPLE_REPLY_2, TAG_BUFFER_REPLY_2],
)
def test_crc_of_captured_frames(frame: bytes) -> None:
    assert tm_crc(frame[1:-2]) == int.from_bytes(frame[-2:], "big")


def test_crc_is_not_ccitt_false() -> None:
    import binascii

    assert tm_crc(b"\x00\x03") == 0x1D0C
    assert binascii.crc_hqx(b"\x00\x03", 0xFFFF) != 0x1D0C


def test_commands_we_send_match_the_captures() -> None:
    assert build_command(0x03) == GET_VERSION
    assert build_command(0x97, b"\x0d") == SET_REGION_NA2
    assert build_command(0x2F, H("00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 01 FF")) == START_READING
    assert build_command(0x2F, H("00 00 02")) == STOP_READING
    assert build_response(0x97) == SET_REGION_REPLY
    assert build_response(0x22, 0x0400) == KEEP_ALIVE


def test_streamed_tag_record() -> None:
    (event,) = feed(Session(), [TAG_12_BYTE_EPC])
    assert event == TagReport(H("E2001026760E017915907125"), antenna=1, rssi=-55)
    (event,) = feed(Session(), [TAG_4_BYTE_EPC])
    assert event == TagReport(H("596F596F"), antenna=1, rssi=-57)


def test_keep_alive_is_a_reply_not_a_tag() -> None:
    (event,) = feed(Session(), [KEEP_ALIVE])
    assert isinstance(event, ReaderReply) and event.status == 0x0400 and event.ok


@pytest.mark.parametrize("data", [TAG_12_BYTE_EPC + KEEP_ALIVE + TAG_4_BYTE_EPC])
def test_every_chunking_gives_the_same_events(data: bytes) -> None:
    expected = feed(Session(), [data])
    assert len(expected) == 3
    for chunks in splits(data):
        assert feed(Session(), chunks) == expected


def test_record_encoder_is_the_inverse_of_the_parser() -> None:
    report = TagReport(H("E2001026760E017915907125"), antenna=1, rssi=-55)
    record = encode_record(report)
    # the same bytes as the captured record, but for the timestamp and frequency we choose
    captured = TAG_12_BYTE_EPC[11:-2]
    assert record[:3] == captured[:3]
    assert record[-18:] == captured[-18:]  # EPC length, PC, EPC and EPC CRC
    assert parse_record(record, 0, 0x01FF) == (report, len(record))


def test_gen2_epc_crc_matches_the_tags() -> None:
    assert gen2_crc(H("3000 E2001026760E017915907125")) == 0x1985
    assert gen2_crc(H("1000 596F596F")) == 0xF313


def test_bad_crc_is_skipped_and_the_next_frame_found() -> None:
    broken = bytearray(TAG_12_BYTE_EPC)
    broken[20] ^= 0x01
    events = feed(Session(), [bytes(broken) + TAG_4_BYTE_EPC])
    errors = [e for e in events if isinstance(e, FrameError)]
    assert errors and errors[0].reason == "bad CRC"
    assert without_errors(events) == [TagReport(H("596F596F"), antenna=1, rssi=-57)]


def test_garbage_and_bad_length_resync() -> None:
    events = feed(Session(), [b"\x00\x13garbage" + b"\xff\xfe" + TAG_4_BYTE_EPC])
    assert [e.reason for e in events if isinstance(e, FrameError)][:1] == ["garbage before frame header"]
    assert any(isinstance(e, FrameError) and "out of range" in e.reason for e in events)
    assert without_errors(events) == [TagReport(H("596F596F"), antenna=1, rssi=-57)]


def test_malformed_record_with_good_crc_is_a_frame_error() -> None:
    # a record that claims a 200-bit EPC in a 40-byte frame
    data = bytearray(TAG_12_BYTE_EPC[5:-2])
    data[22:24] = (200).to_bytes(2, "big")
    (event,) = feed(Session(), [build_response(0x22, data=bytes(data))])
    assert isinstance(event, FrameError) and "malformed 0x22" in event.reason


def test_garbage_is_discarded_and_counted_and_the_buffer_stays_small() -> None:
    s = Session()
    garbage = (b"\xff\x10" + b"\x00" * 100) * 100
    s.receive_data(garbage)
    events = drain(s)
    assert sum(e.discarded for e in events if isinstance(e, FrameError)) == len(garbage)
    assert len(s._rx) == 0


def test_an_incomplete_tail_longer_than_any_frame_is_dropped() -> None:
    from drivers.rfid.base import FrameBuffer

    s = Session()
    s._rx = FrameBuffer(limit=100)
    s.receive_data(b"\xff\xf0" + b"\x00" * 150)  # a header claiming 247 bytes, never completed
    (event,) = drain(s)
    assert event == FrameError("receive buffer overflow", 152)


def test_boot_sequence_then_continuous_read() -> None:
    session = Session(antennas=(1, 2), region="eu3")
    emulator = Emulator()
    session.start()
    converse(session, emulator)
    assert session.booted
    assert session.version == VERSION_REPLY[5:-2]
    # stop (in case it streams), version, program, protocol GEN2, region, antennas, read filter, start
    assert emulator.commands == [0x2F, 0x03, 0x0C, 0x93, 0x97, 0x91, 0x9A, 0x2F]
    assert emulator.streaming
    emulator.tick([TagReport(H("30 74 25 7B F7 19 4E 40 00 00 1A 85"), 2, -40)])
    session.receive_data(emulator.data_to_send())
    assert drain(session) == [TagReport(H("3074257BF7194E4000001A85"), 2, -40)]


def test_module_in_bootloader_gets_boot_firmware() -> None:
    session = Session()
    emulator = Emulator()
    emulator.in_bootloader = True
    session.start()
    converse(session, emulator)
    assert emulator.commands[:4] == [0x2F, 0x03, 0x0C, 0x04]
    assert session.booted and not emulator.in_bootloader


def test_polled_inventory_reads_the_tag_buffer_in_several_replies() -> None:
    session = Session(mode="polled")
    emulator = Emulator()
    session.start()
    converse(session, emulator)
    assert session.booted and not emulator.streaming
    tags = [TagReport(bytes([0x30, i] + [0] * 10), 1, -50 - i) for i in range(10)]
    emulator.field = tags
    session.poll()
    events = converse(session, emulator)
    assert [e for e in events if isinstance(e, TagReport)] == tags
    assert emulator.commands[-4:] == [0x2A, 0x22, 0x29, 0x29]  # 10 records do not fit one reply


def test_captured_polled_inventory() -> None:
    session = Session(mode="polled")
    session.booted = True
    session.poll()
    session.receive_data(H("FF 00 2A 00 00 01 E8") + READ_MULTIPLE_REPLY_2 + TAG_BUFFER_REPLY_2)
    tags = [e for e in drain(session) if isinstance(e, TagReport)]
    assert tags == [TagReport(H("000000000000000000001545"), 1, -33), TagReport(H("596F596F"), 1, -60)]


def test_pause_stops_the_stream() -> None:
    session = Session()
    session.pause()
    assert session.data_to_send() == STOP_READING


def test_emulator_rejects_unknown_opcodes() -> None:
    emulator = Emulator()
    emulator.receive_data(build_command(0x55))
    emulator.tick(None)
    assert emulator.data_to_send() == build_response(0x55, 0x0101)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    feed(Session(), [data])
    feed(Session(mode="polled"), [data])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_stream_finds_the_good_frames(data: st.DataObject) -> None:
    good = TAG_12_BYTE_EPC + TAG_4_BYTE_EPC
    noise = data.draw(st.binary(max_size=80))
    cut = data.draw(st.integers(0, len(noise)))
    # the line goes on after the noise (a fake length byte may hold back up to one frame's worth)
    stream = noise[:cut] + good + noise[cut:] + TAG_4_BYTE_EPC * 8
    events = feed(Session(), [stream])
    tags = [e for e in events if isinstance(e, TagReport)]
    assert tags.count(TagReport(H("596F596F"), 1, -57)) >= 2
    assert TagReport(H("E2001026760E017915907125"), 1, -55) in tags
