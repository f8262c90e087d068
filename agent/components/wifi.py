"""Guest Wi-Fi (the captive portal's backend) and Wi-Fi footfall (probe requests) as components."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from agent.component import Component, Context
from agent.config import Config
from agent.consent import ConsentStore
from agent.guest_wifi import GuestWifi
from agent.web.portal import ROUTES, Portal
from agent.web.routes import Access, Route
from agent.wifi_presence import WifiPresence

__all__ = ["GuestWifiComponent", "PresenceComponent"]


class GuestSession(BaseModel):
    device: str
    started: float
    expires: float
    personalised: bool


class GuestWifiStatus(BaseModel):
    sessions: list[GuestSession]
    auth_failures: int


class PresenceStatus(BaseModel):
    source: str
    state: str
    reason: str | None
    frames: int
    probes: int
    malformed: int
    overflow: int


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
        self.wifi = GuestWifi(ctx.config, portal, ctx.hub, self.consents)
        self.portal = Portal(lambda: self.wifi).handlers()

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.wifi.portal is not None

    async def start(self) -> None:
        await self.consents.open()

    async def stop(self) -> None:
        await self.consents.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("guest wifi", self.wifi.run)]

    def member_of(self, mac: str) -> str | None:
        """The consent id behind a device's session (personalised guests only), for footfall members."""
        return next((s.consent_id for s in self.wifi.sessions.values() if s.device == mac), None)

    def status(self) -> GuestWifiStatus:
        return GuestWifiStatus.model_validate({"sessions": self.wifi.snapshot(),
                                               "auth_failures": self.wifi.auth_failures})

    @classmethod
    def routes(cls) -> Iterable[Route]:
        for method, path, name, summary, content_type, errors in ROUTES:
            yield Route(method, path, partial(_portal, name), Access.GUEST, summary, content_type=content_type,
                        errors=errors, tag="guest")


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
