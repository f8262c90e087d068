"""EPC decoding per the GS1 EPC Tag Data Standard (TDS)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.rfid.epc import decode_sgtin, encode_sgtin96, gtin_check_digit

# TDS 2.x, section 14.5.1 worked example (also used by GS1's EPC encoder/decoder):
# urn:epc:id:sgtin:0614141.812345.6789, filter 3, SGTIN-96 hex 3074257BF7194E4000001A85.
TDS_SGTIN96 = bytes.fromhex("3074257BF7194E4000001A85")


def test_tds_example() -> None:
    s = decode_sgtin(TDS_SGTIN96)
    assert s is not None
    assert s.uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert s.gtin == "80614141123458"
    assert (s.filter, s.company_prefix, s.item_reference, s.serial) == (3, "0614141", "812345", "6789")


@pytest.mark.parametrize(("hex_epc", "uri", "gtin"), [
    # epcpy tests/epc_schemes/test_sgtin.py test_valid_sgtin_tag_encodable_3 (partition 1, 11-digit prefix)
    ("30C579D5D4ADB60000000000", "urn:epc:id:sgtin:50712192365.88.0", "85071219236581"),
    # TDS Annex E SGTIN-198 example: serial "32a/b" written %2F-escaped in the URI
    ("3674257BF6B7A659B2C2BF1000000000000000000000000000", "urn:epc:id:sgtin:0614141.712345.32a%2Fb",
     "70614141123451"),
    # epcpy test_valid_sgtin_tag_encodable_1 (SGTIN-198 with % and & escaped)
    ("362579D5D4ADB6172574B98B34C0000000000000000000000000", "urn:epc:id:sgtin:50712192365.88..%25:.13%26",
     "85071219236581"),
])
def test_golden_vectors(hex_epc: str, uri: str, gtin: str) -> None:
    s = decode_sgtin(bytes.fromhex(hex_epc))
    assert s is not None and s.uri == uri and s.gtin == gtin


def test_encode_is_the_inverse() -> None:
    assert encode_sgtin96("80614141123458", 6789, filter=3, company_prefix_digits=7) == TDS_SGTIN96


@pytest.mark.parametrize("digits", [6, 7, 8, 9, 10, 11, 12])
def test_every_partition_round_trips(digits: int) -> None:
    body = "0" + "1234567890123"[: 12]
    gtin = body + str(gtin_check_digit(body))
    epc = encode_sgtin96(gtin, 42, company_prefix_digits=digits)
    s = decode_sgtin(epc)
    assert s is not None and s.gtin == gtin and s.serial == "42"
    assert len(s.company_prefix) == digits


@pytest.mark.parametrize(
    ("hex_epc", "why"),
    [
        ("E2801160600002054E4C2B58", "not an SGTIN header (a TID-like EPC)"),
        ("3074257BF7194E40000", "too short"),
        ("307C257BF7194E4000001A85", "partition 7 does not exist"),
        ("3063FFFFFFFFFC4000001A85", "company prefix wider than its digits"),
        ("", "empty"),
    ],
)
def test_not_an_sgtin(hex_epc: str, why: str) -> None:
    assert decode_sgtin(bytes.fromhex(hex_epc) if len(hex_epc) % 2 == 0 else bytes.fromhex(hex_epc + "0")) is None, why


def test_gtin_check_digit_known_values() -> None:
    # GS1 General Specifications 7.9.1 example: GTIN-13 629104150021 -> check digit 3
    assert gtin_check_digit("0629104150021") == 3
    assert gtin_check_digit("8061414112345") == 8


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="check digit"):
        encode_sgtin96("80614141123459", 1)
    with pytest.raises(ValueError, match="14 digits"):
        encode_sgtin96("123", 1)
    with pytest.raises(ValueError, match="38 bits"):
        encode_sgtin96("80614141123458", 1 << 38, company_prefix_digits=7)


def _sgtin198(company: int, item: int, serial: str, partition: int = 5, filt: int = 3) -> bytes:
    value = 0x36
    value = value << 3 | filt
    value = value << 3 | partition
    value = value << 24 | company
    value = value << 20 | item
    chars = [ord(c) for c in serial] + [0] * (20 - len(serial))
    for c in chars:
        value = value << 7 | c
    return (value << 2).to_bytes(25, "big")


def test_sgtin198_alphanumeric_serial_with_uri_escape() -> None:
    s = decode_sgtin(_sgtin198(614141, 812345, "32a/b"))
    assert s is not None
    assert s.gtin == "80614141123458"
    assert s.serial == "32a/b"
    assert s.uri == "urn:epc:id:sgtin:0614141.812345.32a%2Fb"


def test_sgtin198_rejects_control_characters() -> None:
    assert decode_sgtin(_sgtin198(614141, 812345, "a\x01")) is None


@given(st.binary(max_size=40))
def test_any_bytes_decode_or_return_none(data: bytes) -> None:
    s = decode_sgtin(data)
    if s is not None:
        assert len(s.gtin) == 14 and s.gtin.isdigit()
        assert gtin_check_digit(s.gtin[:13]) == int(s.gtin[13])
