"""Sources: what staff and ops are told when the adapter cannot be used; replay timing and looping."""

from __future__ import annotations

import asyncio
import errno
import io
from pathlib import Path

import pytest

from drivers.ble.captures import CapturedPacket, write_btsnoop
from drivers.ble.hci import encode_adv_report
from drivers.ble.sources import HciSource, ReplaySource, _explain, make_source


@pytest.mark.parametrize(("exc", "words"), [
    (PermissionError(errno.EPERM, "Operation not permitted"), "needs CAP_NET_RAW and CAP_NET_ADMIN"),
    (OSError(errno.ENODEV, "No such device"), "adapter hci0 not found or down"),
    (OSError(errno.EAFNOSUPPORT, "Address family not supported"), "no Bluetooth support"),
    (AttributeError("module 'socket' has no attribute 'AF_BLUETOOTH'"), "built without Bluetooth sockets"),
])
def test_reasons_are_written_for_people(exc: BaseException, words: str) -> None:
    assert words in _explain(exc, "hci0")


def test_adapter_names_are_checked() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="hci0"):
            HciSource("bluetooth", loop, lambda t, p: None, lambda s, r: None)
    finally:
        loop.close()


async def test_replay_recorded_speed_and_loop(tmp_path: Path) -> None:
    buf = io.BytesIO()
    packets = [CapturedPacket(100.0 + i * 0.1, encode_adv_report("C0:00:00:00:00:01", b"", -50)) for i in range(5)]
    write_btsnoop(buf, packets)
    path = tmp_path / "c.btsnoop"
    path.write_bytes(buf.getvalue())
    got: list[float] = []
    states: list[tuple[str, str | None]] = []
    loop = asyncio.get_running_loop()
    source = make_source(f"replay:{path}?loop", loop, lambda t, p: got.append(t), lambda s, r: states.append((s, r)))
    assert isinstance(source, ReplaySource) and source.repeat and source.speed == 1.0
    t0 = loop.time()
    source.start()
    while len(got) < 10 and loop.time() - t0 < 5:
        await asyncio.sleep(0.02)
    source.stop()
    assert len(got) >= 10  # played twice: it loops
    assert got[4] - got[0] == pytest.approx(0.4, abs=0.01)  # recorded spacing kept
    assert states[0] == ("ok", None)
