"""The captive portal: the one part of the daemon open to anyone in the store.

    GET  /portal/           consent page (openNDS sends the guest here with its FAS query)
    POST /portal/           choices, loyalty id -> consent stored, client authenticated with ndsctl
    GET|POST /portal/withdraw  forget me
    GET  /portal/api        RFC 8908 Captive Portal API (application/captive+json)

Defences: strict input validation, every value HTML-escaped, a CSRF token per pending visit, a rate
limit per client address, an 8 KiB body limit, redirects only to allowed hosts, no script on the pages.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from agent.guest_wifi import Refused
from agent.portal_text import LANGUAGES, pick_language, text
from agent.web.ratelimit import RateLimiter
from agent.web.routes import Handler

__all__ = ["ROUTES", "Portal", "PortalBackend"]

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024
PENDING_TTL_S = 900.0
MAX_PENDING = 5000
RATE_PER_MIN = 60  # requests per client address per minute
_LOYALTY = re.compile(r"^(?:\d{6,20}|[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24})$")
_CSP = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"


@dataclass(slots=True)
class Pending:
    csrf: str
    guest: Any  # agent.guest_wifi.Guest, openNDS's word for who is on the page
    created: float


class PortalBackend(Protocol):
    """What the routes need from guest Wi-Fi (agent/guest_wifi.py; kept narrow so it can be tested on its own)."""

    store_name: str
    session_minutes: int
    allowed_redirect_hosts: set[str]
    logo: tuple[bytes, str] | None

    async def check_visit(self, query: dict[str, str], peer: str) -> Any: ...
    async def verify(self, client: Any, key: str, peer: str) -> Any: ...
    async def authenticate(self, guest: Any, consent: Any) -> Any: ...
    async def give_consent(self, guest: Any, choices: dict[str, bool], lang: str, loyalty: str | None) -> Any: ...
    async def withdraw(self, consent_id: str) -> bool: ...
    async def logout(self, address: str) -> bool: ...
    def seconds_remaining(self, address: str) -> int | None: ...
    def session_of(self, address: str) -> Any: ...
    def refuse(self, reason: str, detail: str, peer: str) -> Refused: ...
    def offers_for(self, address: str) -> list[dict[str, Any]]: ...


def _page(lang: str, title: str, body: str, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f2;color:#1d2327}"
           "main{max-width:28rem;margin:0 auto;padding:1.2rem}h1{font-size:1.4rem}"
           "label{display:block;margin:.7rem 0}input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}"
           "button{font:inherit;padding:.7rem 1.2rem;border:0;border-radius:.4rem;background:#087a3a;color:#fff;width:100%}"
           ".error{color:#b00020}.small{font-size:.85rem;color:#555}button.secondary{background:#555}"
           "a.button{display:block;text-align:center;padding:.7rem;border-radius:.4rem;background:#087a3a;color:#fff;"
           "text-decoration:none}.offer{border:2px dashed #087a3a;border-radius:.5rem;padding:.2rem .8rem;margin:1rem 0}"
           ".code{font-family:monospace;font-size:1.3rem}</style></head>"
           f"<body><main>{body}</main></body></html>")
    return web.Response(text=doc, status=status, content_type="text/html",
                        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                 "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})


class Portal:
    """The portal's handlers (see ROUTES), sharing their pending visits and rate limit."""

    def __init__(self, backend: Callable[[], PortalBackend | None]) -> None:
        self._backend = backend
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.limiter = RateLimiter(RATE_PER_MIN, 60.0)

    def handlers(self) -> dict[str, Handler]:
        return {name: self._guard(getattr(self, name)) if name != "logo" else self.logo
                for name in ("logo", "visit", "submit", "withdraw_page", "withdraw", "captive_api", "logout")}

    def backend(self) -> PortalBackend:
        b = self._backend()
        assert b is not None  # _guard answered 404 otherwise
        return b

    def _guard(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            address = request.remote or "?"
            if self._backend() is None:
                raise web.HTTPNotFound(text="no captive portal configured")
            lang = lang_of(request)
            if not self.limiter.allow(address):
                if self.limiter.refused % 100 == 1:
                    log.warning("portal: rate limit for %s (%d refused so far)", address, self.limiter.refused)
                return _page(lang, "429", f'<p class="error">{text(lang, "too_many")}</p>', 429)
            if request.content_length is not None and request.content_length > MAX_BODY:
                log.warning("portal: %d-byte body from %s refused", request.content_length, address)
                return _page(lang, "413", f'<p class="error">{text(lang, "bad_request")}</p>', 413)
            return await handler(request)

        return wrapped

    def _logout_token(self) -> str:
        token = secrets.token_urlsafe(16)
        self.pending["l:" + token] = Pending(token, None, time.monotonic())
        return token

    def form(self, lang: str, p_id: str, p: Pending, b: PortalBackend, error: str = "") -> web.Response:
        e = html.escape
        err = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
        boxes = "".join(
            f'<label><input type="checkbox" name="{k}" value="1"> {e(text(lang, "c_" + k))}</label>'
            for k in ("wifi", "marketing", "personalisation"))
        logo = '<img src="/portal/logo" alt="" style="max-height:4rem">' if b.logo else ""
        body = (f'{logo}<h1>{e(text(lang, "welcome", store=b.store_name))}</h1>{err}'
                f'<p class="small">{e(text(lang, "terms", minutes=b.session_minutes))}</p>'
                f'<form method="post" action="/portal/?lang={lang}"><p>{e(text(lang, "choices"))}</p>{boxes}'
                f'<label>{e(text(lang, "loyalty"))}<input type="text" name="loyalty" maxlength="254" autocomplete="off"></label>'
                f'<input type="hidden" name="p" value="{e(p_id)}"><input type="hidden" name="csrf" value="{e(p.csrf)}">'
                f'<button type="submit" id="connect">{e(text(lang, "connect"))}</button></form>'
                f'<p class="small"><a href="/portal/withdraw?lang={lang}">{e(text(lang, "withdraw"))}</a></p>')
        return _page(lang, text(lang, "title"), body)

    async def visit(self, request: web.Request) -> web.StreamResponse:
        b = self.backend()
        lang = lang_of(request)
        e = html.escape
        if not request.query or set(request.query) <= {"lang"}:  # a person typing the address: say what to do
            return _page(lang, text(lang, "title"),
                         f'<h1>{e(text(lang, "welcome", store=b.store_name))}</h1>'
                         f'<p id="no-query">{e(text(lang, "no_query", store=b.store_name))}</p>')
        peer = request.remote or "?"
        try:
            guest = await b.check_visit(dict(request.query), peer)
        except Refused as exc:
            session = b.session_of(peer)
            if session is not None and exc.reason == "state":  # openNDS says online already: show where they are
                return self._connected(lang, b, peer, session, origin="", loyalty=None)
            return self._refused_page(lang, exc)
        now = time.monotonic()
        while self.pending and (len(self.pending) >= MAX_PENDING or next(iter(self.pending.values())).created < now - PENDING_TTL_S):
            self.pending.popitem(last=False)
        p_id = secrets.token_urlsafe(16)
        self.pending[p_id] = Pending(secrets.token_urlsafe(16), guest, now)
        return self.form(lang, p_id, self.pending[p_id], b)

    def _refused_page(self, lang: str, exc: Refused) -> web.Response:
        key = "nds_down" if exc.reason == "ndsctl" else "refused"
        status = {"ndsctl": 503, "malformed": 400}.get(exc.reason, 403)
        return _page(lang, text(lang, "title"), f'<p class="error" id="refused">{html.escape(text(lang, key))}</p>',
                     status)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        b = self.backend()
        lang = lang_of(request)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _page(lang, "413", f'<p class="error">{html.escape(text(lang, "bad_request"))}</p>', 413)
        from urllib.parse import parse_qs

        try:
            fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), max_num_fields=10, strict_parsing=False).items()}
        except (UnicodeDecodeError, ValueError):
            fields = {}
        p_id = fields.get("p", "")
        p = self.pending.get(p_id)
        if p is None or not secrets.compare_digest(fields.get("csrf", ""), p.csrf):
            exc = b.refuse("replay", "a form for an unknown or spent visit, or a wrong CSRF token",
                           request.remote or "?")
            return self._refused_page(lang, exc)
        choices = {k: fields.get(k) == "1" for k in ("wifi", "marketing", "personalisation")}
        if not choices["wifi"]:
            return self.form(lang, p_id, p, b, text(lang, "need_wifi"))
        loyalty = fields.get("loyalty", "").strip() or None
        if loyalty is not None and not _LOYALTY.match(loyalty):
            log.info("portal: malformed loyalty id from %s refused", request.remote)
            return self.form(lang, p_id, p, b, text(lang, "loyalty_bad"))
        del self.pending[p_id]  # one use: a replayed form finds nothing
        try:  # openNDS is asked again: the guest may have gone, or logged in elsewhere, since the page was shown
            guest = await b.verify(p.guest.client, p.guest.key, request.remote or "?")
        except Refused as exc:
            return self._refused_page(lang, exc)
        consent = await b.give_consent(guest, choices, lang, loyalty)
        try:
            session = await b.authenticate(guest, consent)
        except RuntimeError as exc:
            log.error("portal: could not authenticate %s with the gateway: %s", request.remote, exc)
            return _page(lang, "503", f'<p class="error">{html.escape(text(lang, "nds_down"))}</p>', 503)
        resp = self._connected(lang, b, guest.ip, session, origin=guest.originurl or "", loyalty=loyalty)
        resp.set_cookie("o2o_consent", consent.id, httponly=True, samesite="Lax", path="/portal/",
                        max_age=365 * 86400)
        return resp

    def _connected(self, lang: str, b: PortalBackend, ip: str, session: Any, *, origin: str,
                   loyalty: str | None) -> web.Response:
        """You are online: time left, the member's current offers, a link onward, a way to disconnect."""
        e = html.escape
        host = urlsplit(origin).hostname or ""
        link = ""
        if origin.startswith(("http://", "https://")) and host in b.allowed_redirect_hosts:
            link = f'<p><a class="button" id="continue" href="{e(origin)}">{e(text(lang, "continue"))}</a></p>'
        elif origin:
            log.info("portal: redirect to %r not allowed (host %r not in allowed_redirect_hosts)", origin[:200], host)
        note = f'<p class="small">{e(text(lang, "unverified"))}</p>' if loyalty else ""
        minutes = max(1, round((session.expires - time.time()) / 60))
        end = time.strftime("%H:%M", time.localtime(session.expires))
        left = f'<p id="time-left">{e(text(lang, "time_left", minutes=minutes, end=end))}</p>'
        offers = "".join(f'<div class="offer"><h2>{e(text(lang, "your_offer"))}: {e(str(o.get("title", "")))}</h2>'
                         f'<p>{e(str(o.get("text", "")))}</p>'
                         + (f'<p class="code">{e(str(o["code"]))}</p>' if o.get("code") else "") + "</div>"
                         for o in b.offers_for(ip))
        logout = (f'<form method="post" action="/portal/logout?lang={lang}"><input type="hidden" name="csrf" '
                  f'value="{e(self._logout_token())}"><button type="submit" id="logout" class="secondary">'
                  f'{e(text(lang, "logout"))}</button></form>')
        return _page(lang, text(lang, "title"),
                     f'<h1 id="success">{e(text(lang, "success"))}</h1>{left}{offers}{note}{link}{logout}')

    async def withdraw_page(self, request: web.Request) -> web.StreamResponse:
        lang = lang_of(request)
        e = html.escape
        token = secrets.token_urlsafe(16)
        self.pending["w:" + token] = Pending(token, None, time.monotonic())
        body = (f'<h1>{e(text(lang, "withdraw"))}</h1><p id="explain">{e(text(lang, "withdraw_explain"))}</p>'
                f'<form method="post" action="/portal/withdraw?lang={lang}">'
                f'<input type="hidden" name="csrf" value="{e(token)}">'
                f'<button type="submit" id="withdraw">{e(text(lang, "withdraw"))}</button></form>')
        return _page(lang, text(lang, "withdraw"), body)

    async def spend_token(self, request: web.Request, kind: str) -> bool:
        """A one-use form token of `kind` ("w" withdraw, "l" logout): True if it was valid (and is now spent)."""
        from urllib.parse import parse_qs

        raw = await request.content.read(MAX_BODY + 1)
        token = parse_qs(raw.decode("utf-8", "replace")).get("csrf", [""])[0]
        if self.pending.pop(f"{kind}:{token}", None) is None:
            log.warning("portal: %s form from %s refused: unknown or spent token", request.path, request.remote)
            return False
        return True

    def refused(self, lang: str) -> web.Response:
        return _page(lang, "403", f'<p class="error">{html.escape(text(lang, "bad_request"))}</p>', 403)

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        b = self.backend()
        lang = lang_of(request)
        if not await self.spend_token(request, "w"):
            return self.refused(lang)
        consent_id = request.cookies.get("o2o_consent", "")
        done = bool(consent_id) and await b.withdraw(consent_id)
        resp = _page(lang, text(lang, "withdraw"), f'<h1 id="withdrawn">{html.escape(text(lang, "withdrawn"))}</h1>')
        resp.del_cookie("o2o_consent", path="/portal/")
        log.info("portal: consent withdrawal from %s (%s)", request.remote, "done" if done else "nothing stored")
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        b = self.backend()
        lang = lang_of(request)
        if not await self.spend_token(request, "l"):
            return self.refused(lang)
        done = await b.logout(request.remote or "")
        log.info("portal: logout from %s (%s)", request.remote, "session ended" if done else "no session")
        return _page(lang, text(lang, "title"), f'<h1 id="loggedout">{html.escape(text(lang, "logged_out"))}</h1>')

    async def captive_api(self, request: web.Request) -> web.StreamResponse:
        b = self.backend()
        remaining = b.seconds_remaining(request.remote or "")
        doc: dict[str, Any] = {"captive": remaining is None,
                               "user-portal-url": f"{request.scheme}://{request.host}/portal/"}
        if remaining is not None:
            doc["seconds-remaining"] = remaining
            doc["can-extend-session"] = True
        import json

        return web.Response(text=json.dumps(doc), content_type="application/captive+json",
                            headers={"Cache-Control": "private, no-store"})

    async def logo(self, request: web.Request) -> web.Response:
        b = self._backend()
        if b is None or b.logo is None:
            raise web.HTTPNotFound()
        data, ctype = b.logo
        return web.Response(body=data, content_type=ctype, headers={"Cache-Control": "max-age=3600"})



def lang_of(request: web.Request) -> str:
    forced = request.query.get("lang")
    return forced if forced in LANGUAGES else pick_language(request.headers.get("Accept-Language"))


# (method, path, handler name, summary, content type, errors): open to guests on the guest listener.
ROUTES: list[tuple[str, str, str, str, str, tuple[int, ...]]] = [
    ("GET", "/portal/logo", "logo", "The store's logo on the portal", "image/*", (404,)),
    ("GET", "/portal/", "visit", "Consent page (openNDS sends the guest here with its FAS query)", "text/html",
     (400, 429)),
    ("POST", "/portal/", "submit", "Consent choices and loyalty id; authenticates the guest", "text/html",
     (403, 413, 429, 503)),
    ("GET", "/portal/withdraw", "withdraw_page", "Withdraw consent (the form)", "text/html", (429,)),
    ("POST", "/portal/withdraw", "withdraw", "Withdraw consent", "text/html", (403, 429)),
    ("GET", "/portal/api", "captive_api", "RFC 8908 Captive Portal API", "application/captive+json", (429,)),
    ("POST", "/portal/logout", "logout", "End the guest's Wi-Fi session", "text/html", (403, 429)),
]
