"""EPC binary decoding per the GS1 EPC Tag Data Standard (TDS): SGTIN-96 and SGTIN-198.

Retail item tags carry an SGTIN: a GTIN (the product) plus a serial (the
item). Other EPC schemes are kept as raw hex by the caller.
References: GS1 EPC Tag Data Standard 2.x, section 14.5.1 (SGTIN-96) and
14.5.1.2 (SGTIN-198), partition table 14-2, and the URI rules of section 6.3.
Pure functions; no PyPI library was both maintained and correct enough to
depend on (see the closing note of issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Sgtin", "decode_sgtin", "encode_sgtin96", "gtin_check_digit"]

SGTIN96_HEADER = 0x30
SGTIN198_HEADER = 0x36

# TDS table 14-2, the SGTIN partition table: partition -> (company prefix bits, digits, item ref bits, digits).
_PARTITIONS: dict[int, tuple[int, int, int, int]] = {
    0: (40, 12, 4, 1),
    1: (37, 11, 7, 2),
    2: (34, 10, 10, 3),
    3: (30, 9, 14, 4),
    4: (27, 8, 17, 5),
    5: (24, 7, 20, 6),
    6: (20, 6, 24, 7),
}
# TDS 14.5.1.2: the serial of SGTIN-198 is up to 20 7-bit characters, zero-padded.
_SERIAL198_CHARS = 20
# TDS table A-1: characters that the pure-identity URI writes as %XX escapes.
_URI_ESCAPE = {'"', "%", "&", "/", "<", ">", "?"}


@dataclass(frozen=True, slots=True)
class Sgtin:
    gtin: str  # GTIN-14, check digit included
    serial: str
    filter: int
    company_prefix: str
    item_reference: str  # indicator digit first, as in the URI

    @property
    def uri(self) -> str:
        serial = "".join(f"%{ord(c):02X}" if c in _URI_ESCAPE else c for c in self.serial)
        return f"urn:epc:id:sgtin:{self.company_prefix}.{self.item_reference}.{serial}"


def gtin_check_digit(digits13: str) -> int:
    """GS1 mod-10 check digit: weights 3,1,3,… from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits13)))
    return (10 - total % 10) % 10


def _split(value: int, partition: int) -> tuple[str, str] | None:
    if partition not in _PARTITIONS:
        return None
    _, cp_digits, ir_bits, ir_digits = _PARTITIONS[partition]
    company = value >> ir_bits
    item = value & ((1 << ir_bits) - 1)
    # A binary field wider than its decimal digits allows is invalid per TDS (not a valid SGTIN).
    if company >= 10**cp_digits or item >= 10**ir_digits:
        return None
    return f"{company:0{cp_digits}d}", f"{item:0{ir_digits}d}"


def decode_sgtin(epc: bytes) -> Sgtin | None:
    """Decode an SGTIN-96 (12 bytes) or SGTIN-198 (25+ bytes) EPC; None if it is not a valid SGTIN."""
    if len(epc) >= 12 and epc[0] == SGTIN96_HEADER:
        value = int.from_bytes(epc[:12], "big")
        serial_bits, serial_len = 38, 96
    elif len(epc) >= 25 and epc[0] == SGTIN198_HEADER:
        value = int.from_bytes(epc[:25], "big") >> 2  # 198 bits in 200
        serial_bits, serial_len = 140, 198
    else:
        return None
    fields = value & ((1 << (serial_len - 8)) - 1)
    filt = fields >> (serial_len - 11) & 0b111
    partition = fields >> (serial_len - 14) & 0b111
    ids = fields >> serial_bits & ((1 << 44) - 1)
    serial_value = fields & ((1 << serial_bits) - 1)
    parts = _split(ids, partition)
    if parts is None:
        return None
    company, item = parts
    if serial_len == 96:
        serial = str(serial_value)
    else:
        decoded = _decode_serial198(serial_value)
        if decoded is None:
            return None
        serial = decoded
    body = item[0] + company + item[1:]
    return Sgtin(body + str(gtin_check_digit(body)), serial, filt, company, item)


def _decode_serial198(value: int) -> str | None:
    chars: list[str] = []
    for i in range(_SERIAL198_CHARS):
        code = value >> (7 * (_SERIAL198_CHARS - 1 - i)) & 0x7F
        if code == 0:
            # Zero pads the tail; a character after a pad is invalid.
            if value & ((1 << (7 * (_SERIAL198_CHARS - 1 - i))) - 1):
                return None
            break
        if code < 0x21 or code == 0x7F:  # TDS table A-1 allows only graphic characters
            return None
        chars.append(chr(code))
    return "".join(chars) if chars else None


def encode_sgtin96(gtin: str, serial: int, *, filter: int = 1, company_prefix_digits: int = 7) -> bytes:
    """The inverse of `decode_sgtin` for SGTIN-96; the simulators and tests use it to make tags."""
    if len(gtin) != 14 or not gtin.isdigit():
        raise ValueError("gtin must be 14 digits")
    if gtin_check_digit(gtin[:13]) != int(gtin[13]):
        raise ValueError(f"bad GTIN check digit in {gtin}")
    partition = next((p for p, spec in _PARTITIONS.items() if spec[1] == company_prefix_digits), None)
    if partition is None:
        raise ValueError("company prefix must have 6 to 12 digits")
    if not 0 <= serial < 1 << 38:
        raise ValueError("SGTIN-96 serial must fit in 38 bits")
    if not 0 <= filter <= 7:
        raise ValueError("filter must be 0-7")
    cp_bits, cp_digits, ir_bits, _ = _PARTITIONS[partition]
    company = int(gtin[1 : 1 + cp_digits])
    item = int(gtin[0] + gtin[1 + cp_digits : 13])
    value = SGTIN96_HEADER
    value = value << 3 | filter
    value = value << 3 | partition
    value = value << cp_bits | company
    value = value << ir_bits | item
    value = value << 38 | serial
    return value.to_bytes(12, "big")
