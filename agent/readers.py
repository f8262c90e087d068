"""One RFID reader, end to end: serial transport -> codec session -> zone presence -> hub events.

The state of a reader, as staff and ops see it:

    starting    not opened yet
    offline     the port is missing or failed (the error says why); retried with backoff
    connecting  the port is open, the reader has not answered yet
    online      the reader answers / reports tags
    silent      the port is open but a polled reader stopped answering
    paused      reads are paused by staff or ops (drain-readers); tags still in the field are kept
    restarting  the runner crashed (a bug, logged) and the supervisor restarts it after a backoff
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from agent.config import ReaderConfig
from agent.events import Event
from agent.hub import Hub
from drivers.rfid import session_class
from drivers.rfid.base import NEED_DATA, FrameError, ReaderReply, ReaderSession, TagReport
from drivers.rfid.epc import decode_sgtin
from drivers.rfid.presence import TagPresence, ZonePresence
from drivers.rfid.transport import PortState, SerialTransport

__all__ = ["READER_STATES", "ReaderRunner", "ReaderSnapshot"]

log = logging.getLogger(__name__)

READER_STATES: Final = ("starting", "offline", "connecting", "online", "silent", "paused", "restarting")
# Frame errors are logged at most once per this many seconds per reader (they are all counted).
_FRAME_ERROR_LOG_S = 30.0
# How often the runner wakes to expire tags and check for silence, at most.
_MAX_TICK_S = 0.25
# Cache of decoded EPCs; a store has thousands of items in view, not millions.
_EPC_CACHE_MAX = 50_000


@dataclass(slots=True)
class ReaderSnapshot:
    id: str
    protocol: str
    port: str
    state: str
    since: float
    error: str | None
    reads: int
    tags_in_view: int
    frame_errors: int
    bytes_discarded: int
    overruns: int
    reconnects: int
    reads_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "port": self.port,
            "state": self.state,
            "since": self.since,
            "error": self.error,
            "reads": self.reads,
            "reads_per_s": round(self.reads_per_s, 1),
            "tags_in_view": self.tags_in_view,
            "frame_errors": self.frame_errors,
            "bytes_discarded": self.bytes_discarded,
            "overruns": self.overruns,
            "reconnects": self.reconnects,
        }


def _epc_fields(epc: bytes, cache: dict[bytes, dict[str, Any]]) -> dict[str, Any]:
    fields = cache.get(epc)
    if fields is None:
        sgtin = decode_sgtin(epc)
        fields = {"epc": epc.hex().upper()}
        if sgtin is not None:
            fields.update(gtin=sgtin.gtin, serial=sgtin.serial, uri=sgtin.uri)
        if len(cache) >= _EPC_CACHE_MAX:
            cache.clear()
        cache[epc] = fields
    return fields


class ReaderRunner:
    """Runs one configured reader until cancelled. Never raises for device trouble: it reports it."""

    def __init__(
        self,
        config: ReaderConfig,
        hub: Hub,
        *,
        gone_after_s: float,
        keep_raw_reads: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._hub = hub
        self._clock = clock
        self._wall = wall
        self._keep_raw = keep_raw_reads
        self.presence_settings = (gone_after_s, keep_raw_reads)
        self.presence = ZonePresence(gone_after_s)
        self.session: ReaderSession = self._new_session()
        self.transport: SerialTransport | None = None
        self.state = "starting"
        self.since = wall()
        self.error: str | None = None
        self.reads = 0
        self.frame_errors = 0
        self.bytes_discarded = 0
        self.reconnects = 0
        self._port_open = False
        self._paused = False
        self._last_frame = clock()
        self._last_poll = 0.0
        self._last_error_log = -_FRAME_ERROR_LOG_S
        self._epc_cache: dict[bytes, dict[str, Any]] = {}
        self._rate_window: tuple[float, int] = (clock(), 0)
        self._rate = 0.0
        self._wake = asyncio.Event()
        self._overrun_seen = (0, float("-inf"))  # (overrun bytes, when that count was first seen)
        self._overrun_base = 0

    def _new_session(self) -> ReaderSession:
        cfg = self.config
        return session_class(cfg.protocol)(
            address=cfg.address, mode=cfg.mode, antennas=sorted(cfg.zones) or [1], region=cfg.region
        )

    # -- public ------------------------------------------------------------------------------

    def dropped_recently(self, within_s: float = 600.0) -> int:
        """Serial bytes dropped (the loop fell behind) in the episode that last grew within `within_s`; else 0."""
        now = self._clock()
        total = self.transport.overruns if self.transport else 0
        last_total, last_change = self._overrun_seen
        if total != last_total:
            if total < last_total or now - last_change > within_s:  # a new transport, or a new episode
                self._overrun_base = 0 if total < last_total else last_total
            self._overrun_seen = last_total, last_change = total, now
        return total - self._overrun_base if now - last_change <= within_s else 0

    def snapshot(self) -> ReaderSnapshot:
        now = self._clock()
        start, count = self._rate_window
        if now - start >= 1.0:
            self._rate = (self.reads - count) / (now - start)
            self._rate_window = (now, self.reads)
        return ReaderSnapshot(
            self.config.id, self.config.protocol, self.config.port, self.state, self.since, self.error,
            self.reads, len(self.presence), self.frame_errors, self.bytes_discarded,
            self.transport.overruns if self.transport else 0, self.reconnects, self._rate,
        )

    def pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        self.session.pause()
        self._flush()
        self._set_state("paused", None)

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._port_open:
            self.session.start()
            self._flush()
            self._set_state("connecting" if self.session.answers_start else "online", None)
        else:
            self._set_state("offline", self.error)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport = SerialTransport(
            self.config.port, baudrate=self.config.baudrate, loop=loop,
            on_data=self._on_data, on_state=self._on_port, on_idle=self._on_idle, name=self.config.id,
        )
        self.transport.start()
        try:
            while True:
                self._wake.clear()
                timeout = self._tick()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that races with the wake-up, and then the reader never stops.
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await asyncio.to_thread(self.transport.stop)
            for tag in self.presence.clear():
                self._publish_gone(tag, "stopped")

    # -- the loop's work ---------------------------------------------------------------------

    def _tick(self) -> float:
        now = self._clock()
        for tag in self.presence.expire(now):
            self._publish_gone(tag, "timeout")
        if self._port_open and not self._paused:
            cfg = self.config
            if self.session.polled and now - self._last_frame >= max(0.5, 3 * cfg.poll_interval_s):
                self.session.response_timeout()  # an answer was lost: do not wait for the silence timeout
            if self.session.polled and now - self._last_poll >= cfg.poll_interval_s:
                self._last_poll = now
                self.session.poll()
                self._flush()
            if (
                self.session.answers_start
                and self.state in ("online", "connecting")
                and (self.session.polled or self.state == "connecting")
                and now - self._last_frame > cfg.silence_timeout_s
            ):
                self._set_state("silent", f"no answer for {cfg.silence_timeout_s:g}s")
                self.session.start()  # the reader may have rebooted: run its start sequence again
                self._flush()
                self._last_frame = now
        nxt = self.presence.next_deadline()
        wait = _MAX_TICK_S if not self.session.polled else min(_MAX_TICK_S, self.config.poll_interval_s)
        if nxt is not None:
            wait = min(wait, max(0.0, nxt - now) + 0.001)
        return wait

    def _flush(self) -> None:
        if self.transport is not None:
            self.transport.write(self.session.data_to_send())

    def _on_port(self, state: PortState) -> None:
        if state.open:
            self._port_open = True
            self._last_frame = self._clock()
            if self.opens_before():
                self.reconnects += 1
            self.session = self._new_session()
            if self._paused:
                self._set_state("paused", None)
                return
            self.session.start()
            self._flush()
            if self.session.answers_start:
                self._set_state("connecting", None)
            else:
                self._set_state("online", None)
        else:
            self._port_open = False
            if state.error == "stopped":
                return
            for tag in self.presence.clear():
                self._publish_gone(tag, "reader_offline")
            self._set_state("paused" if self._paused else "offline", state.error)
        self._wake.set()

    def opens_before(self) -> bool:
        return self.transport is not None and self.transport.opens > 1

    def _on_data(self, data: bytes) -> None:
        self.session.receive_data(data)
        now = self._clock()
        self._drain_session(now)

    def _on_idle(self) -> None:
        """The port thread saw the line go quiet: a partial frame still buffered will never complete."""
        self.session.line_idle()
        self._drain_session(self._clock())

    def _drain_session(self, now: float) -> None:
        session = self.session
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, TagReport):
                self._last_frame = now
                if self.state != "online" and not self._paused:
                    self._set_state("online", None)
                self._on_tag(event, now)
            elif isinstance(event, ReaderReply):
                self._last_frame = now
                if event.ok and self.state in ("connecting", "silent"):
                    self._set_state("online", None)
                elif not event.ok:
                    log.debug("%s: reader answered command 0x%02X with status 0x%02X %s",
                              self.config.id, event.command, event.status, event.detail)
            elif isinstance(event, FrameError):
                self._on_frame_error(event, now)
        self._flush()
        self._wake.set()

    def _on_tag(self, report: TagReport, now: float) -> None:
        self.reads += 1
        if self._paused:
            return
        cfg = self.config
        zone = cfg.zone_for(report.antenna)
        epc_hex = report.epc.hex().upper()
        if self._keep_raw:
            self._hub.publish(Event("tag.read", cfg.id, {
                "epc": epc_hex, "reader": cfg.id, "antenna": report.antenna, "zone": zone, "rssi": report.rssi,
            }))
        appeared = self.presence.observe(epc_hex, zone, report.antenna, report.rssi, now)
        if appeared is not None:
            data = dict(_epc_fields(report.epc, self._epc_cache))
            data.update(reader=cfg.id, antenna=report.antenna, zone=zone, rssi=report.rssi)
            self._hub.publish(Event("tag.seen", cfg.id, data))

    def _publish_gone(self, tag: TagPresence, reason: str) -> None:
        data = dict(_epc_fields(bytes.fromhex(tag.epc), self._epc_cache))
        data.update(
            reader=self.config.id, antenna=tag.antenna, zone=tag.zone, rssi=tag.rssi,
            reads=tag.reads, dwell_s=round(tag.last_seen - tag.first_seen, 3), reason=reason,
        )
        self._hub.publish(Event("tag.gone", self.config.id, data))

    def _on_frame_error(self, err: FrameError, now: float) -> None:
        self.frame_errors += 1
        self.bytes_discarded += err.discarded
        if now - self._last_error_log >= _FRAME_ERROR_LOG_S:
            self._last_error_log = now
            log.warning("%s: bad frame (%s, %d byte(s) skipped); %d bad frame(s) so far",
                        self.config.id, err.reason, err.discarded, self.frame_errors)

    def _set_state(self, state: str, error: str | None) -> None:
        old = self.state
        self.error = error
        if state == old:
            return
        self.state = state
        self.since = self._wall()
        cfg = self.config
        if state == "online":
            log.info("%s: online (%s on %s)", cfg.id, cfg.protocol, cfg.port)
            self._hub.publish(Event("reader.online", cfg.id, {"reader": cfg.id, "protocol": cfg.protocol, "port": cfg.port}))
        elif old == "online" or (state == "offline" and old == "starting"):
            log.warning("%s: %s (%s)", cfg.id, state, error or "no reason given")
            self._hub.publish(Event("reader.offline", cfg.id, {"reader": cfg.id, "state": state, "error": error}))
        else:
            log.info("%s: %s%s", cfg.id, state, f" ({error})" if error else "")
