"""The RFID readers as a component: one supervised runner per configured reader, their actions and card.

A config push rebuilds only the readers whose settings changed; the ports of
new or moved readers are opened once first (`check`), so a push naming a port
that does not exist is rolled back before anything stops. With `--demo`, a
reader that has a [simulator] gets an emulator on a pty behind its port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel, ConfigDict, Field, RootModel

from agent.component import Command, Component, Context, Reason
from agent.config import PROTOCOLS, Config, ReaderConfig
from agent.errors import ConfigProblem
from agent.health import clock_time
from agent.readers import READER_STATES, ReaderRunner
from agent.supervisor import supervise
from agent.web.auth import user_of
from agent.web.routes import Access, Route
from drivers.rfid.transport import probe_port

__all__ = ["ReaderStatus", "Readers"]

log = logging.getLogger(__name__)

ReaderState = Literal[READER_STATES]  # type: ignore[valid-type]


class ReaderStatus(BaseModel):
    id: str
    protocol: Literal[PROTOCOLS]  # type: ignore[valid-type]
    port: str
    state: ReaderState
    since: float
    error: str | None
    reads: int
    reads_per_s: float
    tags_in_view: int
    frame_errors: int
    bytes_discarded: int
    overruns: int
    reconnects: int
    paused_by: str | None = None


class ReadersStatus(RootModel[list[ReaderStatus]]):
    pass


class ReaderAction(BaseModel):
    reader: str
    state: str


class DrainArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(pattern="^(pause|resume)$")
    readers: list[str] | None = None  # None: every reader


class ReaderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reader: str


class Readers(Component):
    key = "readers"
    status_model = ReadersStatus
    card = "readers"
    card_order = 10
    sections = ("rfid",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.runners: dict[str, ReaderRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._paused_by: dict[str, str] = {}
        self._sim_ports: dict[str, str] = {}
        self.simulators: list[Any] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for rc in self.effective(self.ctx.config):
            self._start(rc)

    async def stop(self) -> None:
        for rid in list(self._tasks):
            await self._stop(rid)
        for sim in self.simulators:
            sim.stop()

    def effective(self, cfg: Config) -> list[ReaderConfig]:
        """The configured readers, with the demo's simulated ports in place of theirs."""
        readers = list(cfg.rfid.readers)
        return self._with_simulators(readers) if self.ctx.demo else readers

    def _start(self, rc: ReaderConfig) -> None:
        rfid = self.ctx.config.rfid
        runner = ReaderRunner(rc, self.ctx.hub, gone_after_s=rfid.gone_after_s, keep_raw_reads=rfid.keep_raw_reads)
        if rc.id in self._paused_by:
            runner.pause()  # a restart keeps a reader that staff paused paused
        self.runners[rc.id] = runner

        def crashed(exc: BaseException, restarts: int, wait: float) -> None:
            runner.state = "restarting"
            runner.error = f"{type(exc).__name__}: {exc} (restart #{restarts} in {wait:.0f}s)"

        self._tasks[rc.id] = asyncio.create_task(
            supervise(f"reader {rc.id}", runner.run, on_crash=crashed), name=f"reader-{rc.id}")

    async def _stop(self, reader_id: str) -> None:
        task = self._tasks.pop(reader_id, None)
        self.runners.pop(reader_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def check(self, new: Config) -> list[ConfigProblem]:
        old_readers = {r.id: r for r in self.effective(self.ctx.config)}
        in_use = {r.port for r in old_readers.values()}
        problems = []
        for i, rc in enumerate(self.effective(new)):
            if old_readers.get(rc.id) != rc and rc.port not in in_use:
                error = await asyncio.get_running_loop().run_in_executor(None, probe_port, rc.port, rc.baudrate)
                if error is not None:
                    problems.append(ConfigProblem(f"rfid.readers[{i}].port", f"cannot open {rc.port}: {error}"))
        return problems

    async def apply(self, old: Config, new: Config) -> bool:
        new_readers = {r.id: r for r in self.effective(new)}
        rfid_changed = any(r.presence_settings != (new.rfid.gone_after_s, new.rfid.keep_raw_reads)
                           for r in self.runners.values())
        changed = [rid for rid, rc in new_readers.items()
                   if rid not in self.runners or self.runners[rid].config != rc or rfid_changed]
        removed = [rid for rid in self.runners if rid not in new_readers]
        for rid in removed + [r for r in changed if r in self.runners]:
            await self._stop(rid)
        for rid in removed:
            self._paused_by.pop(rid, None)
        for rid in changed:
            self._start(new_readers[rid])
        return True

    def _with_simulators(self, readers: list[ReaderConfig]) -> list[ReaderConfig]:
        """--demo: put a simulated reader on a pty behind each reader that has a [simulator] section."""
        from drivers.rfid.simulator import start_demo_simulator

        out = []
        for rc in readers:
            if rc.simulator is not None and rc.id not in self._sim_ports:
                sim, sim_port = start_demo_simulator(
                    reader_id=rc.id, protocol=rc.protocol, antennas=sorted(rc.zones), scenario=rc.simulator.scenario,
                    tags=rc.simulator.tags, period_s=rc.simulator.period_s, address=rc.address,
                    directory=self.ctx.storage_dir / "demo-ports")
                self._sim_ports[rc.id] = sim_port
                self.simulators.append(sim)
                log.info("demo: simulated %s reader %s on %s", rc.protocol, rc.id, sim_port)
            port = self._sim_ports.get(rc.id) if rc.simulator is not None else None
            out.append(rc.model_copy(update={"port": port}) if port else rc)
        return out

    # -- actions: the same for the staff page and for central ops ----------------------------

    def _pick(self, ids: list[str] | None) -> list[str]:
        if ids is None:
            return list(self.runners)
        unknown = [i for i in ids if i not in self.runners]
        if unknown:
            raise ValueError(f"unknown reader(s): {', '.join(unknown)}; known: {', '.join(self.runners) or 'none'}")
        return ids

    def pause(self, reader_id: str, by: str) -> str:
        self._pick([reader_id])
        self._paused_by[reader_id] = by
        self.runners[reader_id].pause()
        log.info("readers: %s paused %s", by, reader_id)
        return self.runners[reader_id].state

    def resume(self, reader_id: str, by: str) -> str:
        self._pick([reader_id])
        self._paused_by.pop(reader_id, None)
        self.runners[reader_id].resume()
        log.info("readers: %s resumed %s", by, reader_id)
        return self.runners[reader_id].state

    async def restart(self, reader_id: str, by: str) -> str:
        """Reopen the port and run the reader's start sequence again; a paused reader stays paused."""
        self._pick([reader_id])
        config = self.runners[reader_id].config
        await self._stop(reader_id)
        self._start(config)
        log.info("readers: %s restarted %s%s", by, reader_id, " (still paused)" if reader_id in self._paused_by else "")
        return self.runners[reader_id].state

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("POST", "/api/actions/readers/{reader}/{action}", cls._action, Access.ADMIN,
                    "Restart, pause or resume a reader (admin)", response=ReaderAction, errors=(404,),
                    params={"reader": "the reader's id", "action": "restart, pause or resume"})

    async def _action(self, request: web.Request) -> web.Response:
        rid, action = request.match_info["reader"], request.match_info["action"]
        if rid not in self.runners:
            raise web.HTTPNotFound(text=f"no reader {rid!r}")
        by = user_of(request)
        if action == "restart":
            state = await self.restart(rid, by)
        elif action == "pause":
            state = self.pause(rid, by)
        elif action == "resume":
            state = self.resume(rid, by)
        else:
            raise web.HTTPNotFound(text=f"no action {action!r}")
        return web.json_response({"reader": rid, "state": state})

    def commands(self) -> Iterable[Command]:
        yield Command("drain-readers", DrainArgs, self._cmd_drain, "pause or resume readers (all, or those named)")
        yield Command("restart-reader", ReaderArgs, self._cmd_restart, "reopen a reader's port")

    async def _cmd_drain(self, args: DrainArgs) -> dict[str, Any]:
        ids = self._pick(args.readers)
        for rid in ids:
            (self.pause if args.action == "pause" else self.resume)(rid, "central ops")
        return {"readers": {rid: self.runners[rid].state for rid in ids}}

    async def _cmd_restart(self, args: ReaderArgs) -> dict[str, Any]:
        return {"reader": args.reader, "state": await self.restart(args.reader, "central ops")}

    # -- what staff and ops see --------------------------------------------------------------

    def status(self) -> ReadersStatus:
        # In the config's order, whatever order they were (re)started in: rows stay put on the staff page.
        order = {rc.id: i for i, rc in enumerate(self.ctx.config.rfid.readers)}
        runners = sorted(self.runners.items(), key=lambda item: order.get(item[0], len(order)))
        return ReadersStatus([ReaderStatus(**r.snapshot().to_dict(), paused_by=self._paused_by.get(rid))
                              for rid, r in runners])

    def health(self) -> Iterable[Reason]:
        runners = list(self.runners.values())
        for r in runners:
            rid, state = r.config.id, r.state
            if dropped := r.dropped_recently():
                yield Reason("amber", f"Reader {rid}: {dropped:,} bytes of reads dropped in the last minutes, the "
                                      "gateway could not keep up (CPU busy?).")
            if state == "online":
                continue
            since = clock_time(r.since)
            if state == "offline":
                yield Reason("amber", f"Reader {rid} unplugged or off since {since}: check its cable and power.")
            elif state == "silent":
                yield Reason("amber", f"Reader {rid} not answering since {since}: switch it off and on.")
            elif state == "paused":
                who = self._paused_by.get(rid, "staff")
                yield Reason("amber", f"Reader {rid} paused by {who} since {since}.")
            else:
                yield Reason("amber", f"Reader {rid} {state} since {since}.")
        if runners and all(r.state in ("offline", "silent") for r in runners):
            yield Reason("red", "No RFID reader is working: self-checkout and the exit gate are blind.")
        checkout = self.ctx.config.checkout
        if not runners and (checkout.stations or checkout.gates):
            yield Reason("red", "No RFID reader is configured, but self-checkout or an exit gate is: they are blind.")

    def metrics(self) -> Iterable[Metric]:
        reads = CounterMetricFamily("o2o_reader_reads", "Raw tag reads per reader", labels=["reader", "protocol"])
        online = GaugeMetricFamily("o2o_reader_online", "1 when the reader is online", labels=["reader", "state"])
        frame_errors = CounterMetricFamily("o2o_reader_frame_errors", "Bad frames skipped per reader", labels=["reader"])
        overruns = CounterMetricFamily("o2o_reader_overrun_bytes", "Bytes dropped because the daemon fell behind",
                                       labels=["reader"])
        for rid, r in self.runners.items():
            s = r.snapshot()
            reads.add_metric([rid, s.protocol], s.reads)
            online.add_metric([rid, s.state], 1.0 if s.state == "online" else 0.0)
            frame_errors.add_metric([rid], s.frame_errors)
            overruns.add_metric([rid], s.overruns)
        return [reads, online, frame_errors, overruns]
