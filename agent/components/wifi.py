"""Guest Wi-Fi (the captive portal's backend) and Wi-Fi footfall (probe requests) as components."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent.component import Component, Context, Reason
from agent.config import Config
from agent.consent import ConsentStore
from agent.guest_wifi import GuestWifi
from agent.web.portal import ROUTES, Portal
from agent.web.routes import Access, Route
from agent.wifi_presence import WifiPresence
from drivers.wifi.demo_opennds import DemoOpenNds

__all__ = ["GuestWifiComponent", "PresenceComponent"]


class GuestSession(BaseModel):
    device: str
    started: float
    expires: float
    personalised: bool


class GuestWifiStatus(BaseModel):
    sessions: list[GuestSession]
    auth_failures: int
    refused: dict[str, int]  # visits and forms refused, by reason (agent/guest_wifi.py REFUSALS)


class ZoneCount(BaseModel):
    devices: int
    randomized: int


class PresenceStatus(BaseModel):
    source: str
    state: str
    reason: str | None
    frames: int
    probes: int
    malformed: int
    overflow: int
    window_s: float
    window_start: float | None
    devices_now: int  # distinct devices heard in the window in progress
    zones_now: dict[str, ZoneCount]
    last_window: dict[str, Any] | None


async def _portal(name: str, comp: GuestWifiComponent, request: web.Request) -> web.StreamResponse:
    return await comp.portal[name](request)


class GuestWifiComponent(Component):
    key = "wifi"
    status_model = GuestWifiStatus
    card = "wifi"
    card_order = 70
    sections = ("wifi", "store")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        portal = ctx.config.wifi.portal
        assert portal is not None
        self.consents = ConsentStore(ctx.storage_dir / "consents.db")
        self.demo_nds: DemoOpenNds | None = None
        if ctx.demo and portal.ndsctl == "demo":  # no openNDS in a demo: its client list, in process
            self.demo_nds = DemoOpenNds(portal.listen or ctx.config.http.listen, ctx.config.store.name or "Demo",
                                        portal.faskey.get_secret_value() if portal.faskey else "")
        self.wifi = GuestWifi(ctx.config, portal, ctx.hub, self.consents, nds=self.demo_nds)
        self.portal = Portal(lambda: self.wifi).handlers()

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.wifi.portal is not None

    async def start(self) -> None:
        await self.consents.open()
        self.wifi.offers = self._offers_of

    def _offers_of(self, session: Any) -> list[dict[str, Any]]:
        from agent.o2o.offers import Offers  # the offers feature, when it runs

        offers = self.ctx.get(Offers)
        return [] if offers is None or session.member is None else offers.offers_of(session.member)

    async def stop(self) -> None:
        await self.consents.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("guest wifi", self.wifi.run)]

    def member_of(self, mac: str) -> str | None:
        """The consent id behind a device's session (personalised guests only), for footfall members."""
        return next((s.consent_id for s in self.wifi.sessions.values() if s.device == mac), None)

    def status(self) -> GuestWifiStatus:
        return GuestWifiStatus.model_validate({"sessions": self.wifi.snapshot(),
                                               "auth_failures": self.wifi.auth_failures,
                                               "refused": dict(self.wifi.refused)})

    def health(self) -> Iterable[Reason]:
        if self.wifi.auth_failures:
            yield Reason("amber", f"Guest Wi-Fi: {self.wifi.auth_failures} guest(s) could not be let online "
                                  "(openNDS refused or did not answer): check openNDS.")

    def metrics(self) -> Iterable[Metric]:
        refused = CounterMetricFamily("o2o_portal_refused", "Portal visits and forms refused, by reason",
                                      labels=["reason"])
        for reason, n in self.wifi.refused.items():
            refused.add_metric([reason], n)
        yield refused
        yield GaugeMetricFamily("o2o_wifi_sessions", "Guest Wi-Fi sessions now", value=len(self.wifi.sessions))

    @classmethod
    def routes(cls) -> Iterable[Route]:
        for method, path, name, summary, content_type, errors in ROUTES:
            yield Route(method, path, partial(_portal, name), Access.GUEST, summary, content_type=content_type,
                        errors=errors, tag="guest")
        yield Route("GET", "/portal/demo", cls._demo_join, Access.GUEST,
                    "Demo only: join the Wi-Fi (openNDS lets the phone in and sends it to the portal)",
                    content_type="text/html", errors=(404,), tag="guest")

    async def _demo_join(self, request: web.Request) -> web.Response:
        if self.demo_nds is None:
            raise web.HTTPNotFound(text="only in the demo (o2o-edge run --demo with ndsctl = \"demo\")")
        peer = request.remote or "127.0.0.1"
        mac = "02:00:" + ":".join(f"{int(p):02x}" for p in peer.split(".")[-4:]) if peer.count(".") == 3 \
            else "02:00:00:00:00:01"
        raise web.HTTPFound(f"/portal/?{self.demo_nds.arrive(peer, mac)}")


class PresenceComponent(Component):
    key = "wifi_presence"
    status_model = PresenceStatus
    card = "wifi"
    card_order = 70
    sections = ("wifi",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        presence = ctx.config.wifi.presence
        assert presence is not None
        self.presence = WifiPresence(presence, ctx.hub, ctx.gateway, known=self._known)

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.wifi.presence is not None

    def _known(self, mac: str) -> str | None:
        guest = self.ctx.get(GuestWifiComponent)
        return None if guest is None else guest.member_of(mac)

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("wifi presence", self.presence.run)]

    def status(self) -> PresenceStatus:
        snap: dict[str, Any] = self.presence.snapshot()
        return PresenceStatus.model_validate(snap)

    def metrics(self) -> Iterable[Metric]:
        now = GaugeMetricFamily("o2o_wifi_devices_now", "Devices heard in the footfall window in progress",
                                labels=["zone"])
        for zone, count in self.presence.current().items():
            now.add_metric([zone], count["devices"])
        yield now
        yield CounterMetricFamily("o2o_wifi_probes", "Probe requests decoded", value=self.presence.probes)
        yield CounterMetricFamily("o2o_wifi_malformed", "Malformed frames skipped", value=self.presence.malformed)
