"""Guest Wi-Fi: the captive portal's backend on the gateway (openNDS FAS), consents and sessions.

Without consent to personalisation the store knows a guest only as a MAC hashed with today's salt; with
it, the MAC is kept with the consent so the guest can be recognised. Sessions end when they expire,
are withdrawn, or the daemon stops; each start and end is an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from agent.config import Config, PortalConfig
from agent.consent import Consent, ConsentStore
from agent.events import Event
from agent.hub import Hub
from agent.portal_text import TEXT_VERSION
from agent.privacy import DailySalt
from drivers.wifi.fas import FasClient, FasError, parse_fas
from drivers.wifi.ndsctl import NdsCtl, NdsCtlError

__all__ = ["GuestWifi"]

log = logging.getLogger(__name__)

MAX_SESSIONS = 5000


@dataclass(slots=True)
class WifiSession:
    ip: str
    mac: str
    device: str  # the daily hash, or the MAC if the guest consented to personalisation
    consent_id: str
    started: float
    expires: float
    member: str | None


class GuestWifi:
    def __init__(self, config: Config, portal: PortalConfig, hub: Hub, consents: ConsentStore,
                 *, salt: DailySalt | None = None) -> None:
        self.portal = portal
        self.store_name = config.store.name or config.store.id
        self.session_minutes = portal.session_minutes
        self.allowed_redirect_hosts = set(portal.allowed_redirect_hosts)
        self.logo = _load_logo(portal.logo)
        self._hub = hub
        self._source = config.store.gateway
        self._consents = consents
        self._salt = salt or DailySalt()
        self._ndsctl = NdsCtl(portal.ndsctl)
        self.sessions: dict[str, WifiSession] = {}  # by client IP
        self.auth_failures = 0

    # -- the portal's backend ------------------------------------------------------------------

    def parse_visit(self, query: dict[str, str], address: str) -> FasClient:
        faskey = self.portal.faskey.get_secret_value() if self.portal.faskey else None
        try:
            return parse_fas(query, level=self.portal.fas_secure_level, faskey=faskey)
        except FasError as exc:
            raise ValueError(str(exc)) from exc

    async def give_consent(self, client: FasClient, choices: dict[str, bool], lang: str,
                           loyalty: str | None) -> Consent:
        consent = await self._consents.give(choices, text_version=TEXT_VERSION, lang=lang, mac=client.clientmac,
                                            loyalty=loyalty)
        data: dict[str, Any] = {"consent": consent.id, "choices": choices, "text_version": TEXT_VERSION,
                                "lang": lang}
        if loyalty:
            data["loyalty"] = loyalty
            data["loyalty_verified"] = False  # the cloud checks it (now, or when the link is back)
        self._hub.publish(Event("consent.given", self._source, data))
        return consent

    async def authenticate(self, client: FasClient, consent: Consent) -> None:
        p = self.portal
        try:
            await self._ndsctl.auth(client.clientmac, minutes=p.session_minutes, upload_kbps=p.upload_kbps,
                                    download_kbps=p.download_kbps, upload_quota_kb=p.upload_quota_kb,
                                    download_quota_kb=p.download_quota_kb, custom=f"consent={consent.id}")
        except NdsCtlError as exc:
            self.auth_failures += 1
            raise RuntimeError(str(exc)) from exc
        now = time.time()
        existing = self.sessions.get(client.clientip)
        if existing is not None and existing.mac == client.clientmac:
            existing.expires = now + p.session_minutes * 60  # a renewal: same guest, fresh session length
            existing.consent_id = consent.id
            self._hub.publish(Event("wifi.session.renew", self._source, {"device": existing.device,
                                                                         "minutes": p.session_minutes}))
            return
        personal = consent.choices.get("personalisation", False)
        device = client.clientmac if personal else self._salt.hash(client.clientmac)
        if len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions.values(), key=lambda s: s.started)
            self._end(oldest, "evicted")
        self.sessions[client.clientip] = WifiSession(client.clientip, client.clientmac, device, consent.id, now,
                                                     now + p.session_minutes * 60,
                                                     consent.loyalty if personal else None)
        data: dict[str, Any] = {"device": device, "minutes": p.session_minutes,
                                "consent": consent.id, "personalised": personal}
        if personal and consent.loyalty:
            data["loyalty"] = consent.loyalty
        self._hub.publish(Event("wifi.session.start", self._source, data))
        log.info("wifi: guest session started for %s minutes (%s)", p.session_minutes,
                 "personalised" if personal else "anonymous")

    async def withdraw(self, consent_id: str) -> bool:
        done = await self._consents.withdraw(consent_id)
        if done:
            for s in [s for s in self.sessions.values() if s.consent_id == consent_id]:
                s.device = self._salt.hash(s.mac)  # forget the MAC for the rest of the session
                s.member = None
            self._hub.publish(Event("consent.withdrawn", self._source, {"consent": consent_id}))
        return done

    async def logout(self, address: str) -> bool:
        s = self.sessions.get(address)
        if s is None:
            return False
        try:
            await self._ndsctl.deauth(s.mac)
        except NdsCtlError as exc:
            log.error("wifi: deauth of a guest failed: %s", exc)
        self._end(s, "logout")
        return True

    def seconds_remaining(self, address: str) -> int | None:
        s = self.sessions.get(address)
        if s is None:
            return None
        left = int(s.expires - time.time())
        return left if left > 0 else None

    # -- sessions ------------------------------------------------------------------------------

    def _end(self, s: WifiSession, reason: str) -> None:
        self.sessions.pop(s.ip, None)
        self._hub.publish(Event("wifi.session.end", self._source, {
            "device": s.device, "reason": reason, "minutes": round((time.time() - s.started) / 60, 1)}))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.time()
            for s in [s for s in self.sessions.values() if s.expires <= now]:
                self._end(s, "expired")

    def snapshot(self) -> list[dict[str, Any]]:
        """For staff: identifiers masked."""
        return [{"device": s.device[:4] + "…", "started": s.started, "expires": s.expires,
                 "personalised": s.member is not None or len(s.device) == 17} for s in self.sessions.values()]


_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


def _load_logo(path: Any) -> tuple[bytes, str] | None:
    if path is None:
        return None
    ctype = _LOGO_TYPES.get(path.suffix.lower())
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("portal: logo %s unreadable (%s); the portal shows none", path, exc.strerror)
        return None
    if ctype is None or len(data) > 256 * 1024:
        log.warning("portal: logo %s must be a PNG, JPEG or SVG of at most 256 KiB; the portal shows none", path)
        return None
    return data, ctype
