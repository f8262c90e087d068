"""Guest Wi-Fi: the captive portal's backend on the gateway (openNDS FAS), verified with openNDS itself.

A FAS query proves nothing by itself: anyone in the store can type one. Before
a guest sees the consent form, and again right before `ndsctl auth`, the client
is checked with openNDS (`ndsctl json KEY`, where KEY is `tok` at level 0,
rhid = sha256(hid + faskey) at 1-4, or the guest's IP at 1 and 4 when no
faskey is configured): openNDS must know it, it must be waiting
(Preauthenticated), its token must be the one the query names (tok, or
sha256(token) = hid), its IP the query's and the HTTP peer's, its MAC the
query's (levels 1-4). The guest is then authenticated by the token openNDS
reported, and each token once: a replayed or forged query gets a refusal
page, a counted and logged refusal, and no `ndsctl auth`. The MAC that is
kept (with personalisation consent only) is the one openNDS reports, never
one taken from the query.

Without consent to personalisation the store knows a guest only as a MAC hashed
with today's salt. Sessions end when they expire, are withdrawn or logged out;
each start and end is an event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import Config, PortalConfig
from agent.consent import Consent, ConsentStore
from agent.events import Event
from agent.hub import Hub
from agent.portal_text import TEXT_VERSION
from agent.privacy import DailySalt
from drivers.wifi.fas import FasClient, FasError, lookup_key, parse_fas, token_hid
from drivers.wifi.ndsctl import NdsClient, NdsCtl, NdsCtlError

__all__ = ["REFUSALS", "Guest", "GuestWifi", "Refused"]

log = logging.getLogger(__name__)

MAX_SESSIONS = 5000
# Keys that authenticated once are remembered this long (openNDS gives a returning device a new token) ...
USED_TTL_S = 24 * 3600.0
# ... and at most this many (a store sees far fewer guests a day).
MAX_USED = 50_000
# Why a visit or a form was refused; each is counted and shown to ops.
REFUSALS = ("malformed", "peer", "unknown", "state", "token", "replay", "ndsctl")


class Refused(Exception):
    """A FAS query or form that must not lead to `ndsctl auth`; `reason` is one of REFUSALS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class OpenNds(Protocol):
    """openNDS as ndsctl reaches it (drivers/wifi/ndsctl.py), or the demo's stand-in (drivers/wifi/demo_opennds.py)."""

    async def client(self, key: str) -> NdsClient | None: ...
    async def auth(self, client: str, *, minutes: int, upload_kbps: int = 0, download_kbps: int = 0,
                   upload_quota_kb: int = 0, download_quota_kb: int = 0, custom: str = "") -> None: ...
    async def deauth(self, client: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Guest:
    """A client openNDS itself vouched for: what `ndsctl json` said; key is its token, what it is authenticated by."""

    key: str
    ip: str
    mac: str
    originurl: str
    client: FasClient  # the query as parsed, to check it again right before `ndsctl auth`


@dataclass(slots=True)
class WifiSession:
    ip: str
    mac: str
    device: str  # the daily hash, or the MAC if the guest consented to personalisation
    consent_id: str
    started: float
    expires: float
    member: str | None  # the loyalty id, with personalisation consent only


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    x = x.ipv4_mapped or x if isinstance(x, ipaddress.IPv6Address) else x
    y = y.ipv4_mapped or y if isinstance(y, ipaddress.IPv6Address) else y
    return x == y


class GuestWifi:
    def __init__(self, config: Config, portal: PortalConfig, hub: Hub, consents: ConsentStore,
                 *, salt: DailySalt | None = None, nds: OpenNds | None = None) -> None:
        self.portal = portal
        self.store_name = config.store.name or config.store.id
        self.session_minutes = portal.session_minutes
        self.allowed_redirect_hosts = set(portal.allowed_redirect_hosts)
        self.logo = _load_logo(portal.logo)
        self._hub = hub
        self._source = config.store.gateway
        self._consents = consents
        self._salt = salt or DailySalt()
        self._ndsctl: OpenNds = nds or NdsCtl(portal.ndsctl)
        self._faskey = portal.faskey.get_secret_value()
        self._used: OrderedDict[str, float] = OrderedDict()
        self.sessions: dict[str, WifiSession] = {}  # by client IP
        self.auth_failures = 0
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        # The member's current offers for the success page (set by the offers feature; none by default).
        self.offers: Callable[[WifiSession], list[dict[str, Any]]] = lambda session: []

    # -- verifying a guest with openNDS --------------------------------------------------------

    def refuse(self, reason: str, detail: str, peer: str) -> Refused:
        """Count and log a refusal; the exception to raise or to show."""
        self.refused[reason] += 1
        log.warning("portal: refused %s from %s: %s (%d %s refusal(s) so far)", reason, peer, detail,
                    self.refused[reason], reason)
        return Refused(reason, detail)

    async def check_visit(self, query: dict[str, str], peer: str) -> Guest:
        """The guest behind a FAS query, vouched for by openNDS; Refused otherwise."""
        try:
            client = parse_fas(query, level=self.portal.fas_secure_level, faskey=self._faskey)
            key = lookup_key(client, self._faskey)
        except FasError as exc:
            raise self.refuse("malformed", str(exc), peer) from exc
        return await self.verify(client, key, peer)

    async def verify(self, client: FasClient, key: str, peer: str) -> Guest:
        if not _same_ip(client.clientip, peer):
            raise self.refuse("peer", f"the query is for {client.clientip}, the page was asked by {peer}", peer)
        try:
            nds = await self._ndsctl.client(key)
        except NdsCtlError as exc:
            raise self.refuse("ndsctl", str(exc), peer) from exc
        if nds is None:
            raise self.refuse("unknown", "openNDS knows no client by this query (forged, or an old token)", peer)
        if not nds.preauthenticated:
            raise self.refuse("state", f"openNDS says the client is {nds.state}, not waiting to log in", peer)
        matches = nds.token == client.tok if client.level == 0 else token_hid(nds.token) == client.hid
        if not matches or not _same_ip(nds.ip, client.clientip):
            raise self.refuse("token", "the query does not match openNDS's client", peer)
        if client.clientmac is not None and nds.mac != client.clientmac:
            raise self.refuse("token", "the query's MAC is not the client's", peer)
        if nds.token in self._used:  # openNDS would refuse it anyway; never ask twice with one token
            raise self.refuse("replay", "this query already authenticated a guest", peer)
        return Guest(nds.token, nds.ip, nds.mac, client.originurl, client)

    def _spend(self, key: str) -> None:
        now = time.monotonic()
        while self._used and (len(self._used) >= MAX_USED or next(iter(self._used.values())) < now - USED_TTL_S):
            self._used.popitem(last=False)
        self._used[key] = now

    # -- consent and the session ---------------------------------------------------------------

    async def give_consent(self, guest: Guest, choices: dict[str, bool], lang: str, loyalty: str | None) -> Consent:
        consent = await self._consents.give(choices, text_version=TEXT_VERSION, lang=lang, mac=guest.mac,
                                            loyalty=loyalty)
        data: dict[str, Any] = {"consent": consent.id, "choices": choices, "text_version": TEXT_VERSION,
                                "lang": lang}
        if loyalty:
            data["loyalty"] = loyalty
            data["loyalty_verified"] = False  # the cloud checks it (now, or when the link is back)
        self._hub.publish(Event("consent.given", self._source, data))
        return consent

    async def authenticate(self, guest: Guest, consent: Consent) -> WifiSession:
        """`ndsctl auth` by the token openNDS vouched for; the token is spent even if openNDS refuses."""
        p = self.portal
        self._spend(guest.key)
        try:
            await self._ndsctl.auth(guest.key, minutes=p.session_minutes, upload_kbps=p.upload_kbps,
                                    download_kbps=p.download_kbps, upload_quota_kb=p.upload_quota_kb,
                                    download_quota_kb=p.download_quota_kb, custom=f"consent={consent.id}")
        except NdsCtlError as exc:
            self.auth_failures += 1
            raise RuntimeError(str(exc)) from exc
        now = time.time()
        personal = consent.choices.get("personalisation", False)
        device = guest.mac if personal else self._salt.hash(guest.mac)
        if len(self.sessions) >= MAX_SESSIONS:
            self._end(min(self.sessions.values(), key=lambda s: s.started), "evicted")
        old = self.sessions.get(guest.ip)
        if old is not None:
            self._end(old, "replaced")
        session = WifiSession(guest.ip, guest.mac, device, consent.id, now, now + p.session_minutes * 60,
                              consent.loyalty if personal else None)
        self.sessions[guest.ip] = session
        data: dict[str, Any] = {"device": device, "minutes": p.session_minutes,
                                "consent": consent.id, "personalised": personal}
        if personal and consent.loyalty:
            data["loyalty"] = consent.loyalty
            data["marketing"] = consent.choices.get("marketing", False)  # may the member get offers
        self._hub.publish(Event("wifi.session.start", self._source, data))
        log.info("wifi: guest session started for %s minutes (%s)", p.session_minutes,
                 "personalised" if personal else "anonymous")
        return session

    async def withdraw(self, consent_id: str) -> bool:
        done = await self._consents.withdraw(consent_id)
        if done:
            members = set()
            for s in [s for s in self.sessions.values() if s.consent_id == consent_id]:
                s.device = self._salt.hash(s.mac)  # forget the MAC for the rest of the session
                if s.member:
                    members.add(s.member)
                s.member = None
            data: dict[str, Any] = {"consent": consent_id}
            if len(members) == 1:  # the member the store must forget too (agent/o2o/members.py)
                data["member"] = members.pop()
            self._hub.publish(Event("consent.withdrawn", self._source, data))
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

    def session_of(self, address: str) -> WifiSession | None:
        s = self.sessions.get(address)
        return s if s is not None and s.expires > time.time() else None

    def offers_for(self, address: str) -> list[dict[str, Any]]:
        s = self.session_of(address)
        return [] if s is None or s.member is None else self.offers(s)

    def seconds_remaining(self, address: str) -> int | None:
        s = self.session_of(address)
        return None if s is None else max(1, int(s.expires - time.time()))

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
