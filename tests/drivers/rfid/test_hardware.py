"""Opt-in: a real reader on a serial port.

    scripts/test tests/drivers/rfid/test_hardware.py --rfid-port /dev/ttyUSB0 --rfid-protocol mercury

Put at least one tag in the field. Skipped (with this message) when --rfid-port is not given.
"""

from __future__ import annotations

import time

import pytest
import serial

from drivers.rfid import session_class
from drivers.rfid.base import NEED_DATA, ReaderReply, TagReport


@pytest.fixture
def rfid_port(request: pytest.FixtureRequest) -> str:
    port = request.config.getoption("--rfid-port")
    if not port:
        pytest.skip("no real reader: pass --rfid-port PORT (and --rfid-protocol) to run hardware tests")
    return str(port)


@pytest.mark.hardware
def test_real_reader_answers_and_reports_a_tag(rfid_port: str, request: pytest.FixtureRequest) -> None:
    protocol = request.config.getoption("--rfid-protocol")
    session = session_class(protocol)()
    baud = {"mercury": 115200, "em4100": 9600}.get(protocol, 57600)
    replies, tags = 0, 0
    with serial.serial_for_url(rfid_port, baudrate=baud, timeout=0.1) as port:
        session.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not tags:
            port.write(session.data_to_send())
            if session.polled:
                session.poll()
            session.receive_data(port.read(4096))
            while (event := session.next_event()) is not NEED_DATA:
                replies += isinstance(event, ReaderReply)
                tags += isinstance(event, TagReport)
    assert tags, f"no tag reported in 15 s ({replies} replies)"
