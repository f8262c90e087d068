"""Helpers shared by the codec tests: drive a session from bytes, in any chunking."""

from __future__ import annotations

from collections.abc import Iterable

from drivers.rfid.base import NEED_DATA, FrameError, ReaderEvent, ReaderSession


def drain(session: ReaderSession) -> list[ReaderEvent]:
    out: list[ReaderEvent] = []
    for _ in range(100_000):  # a codec that never says NEED_DATA is a bug; do not hang the suite
        event = session.next_event()
        if event is NEED_DATA:
            return out
        assert isinstance(event, ReaderEvent.__args__)  # type: ignore[attr-defined]
        out.append(event)
    raise AssertionError("codec never returned NEED_DATA")


def feed(session: ReaderSession, chunks: Iterable[bytes]) -> list[ReaderEvent]:
    out: list[ReaderEvent] = []
    for chunk in chunks:
        session.receive_data(chunk)
        out += drain(session)
    return out


def splits(data: bytes) -> Iterable[list[bytes]]:
    """The data whole, byte by byte, and cut at every single point (h11's test_chunk_boundaries)."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def without_errors(events: list[ReaderEvent]) -> list[ReaderEvent]:
    return [e for e in events if not isinstance(e, FrameError)]
