"""The staff page's own routes: the page and its assets, login, who am I, the cards, status, diagnostics,
metrics, OpenAPI and /healthz. Everything a feature adds comes from its component's routes()."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from agent.component import Component, Context
from agent.components.activity import ActivityComponent
from agent.components.outbox import OutboxComponent
from agent.config_push import masked_config
from agent.web.auth import Session, SessionStore, session_of, user_of, verify_password
from agent.web.metrics import CONTENT_TYPE, render
from agent.web.ratelimit import RateLimiter
from agent.web.routes import Access, Route

__all__ = ["COOKIE", "StaffSite", "staff_routes"]

log = logging.getLogger(__name__)

COOKIE = "o2o_session"
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'")
_TYPES = {".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".mp3": "audio/mpeg", ".wav": "audio/wav", ".png": "image/png"}
# Served under /static: scripts, styles, images and sounds; pages have their own routes.
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg|mp3|wav|png)$")


def _assets(folder: str, pattern: re.Pattern[str] = _ASSET) -> dict[str, bytes]:
    """The page's assets ship inside the package; nothing else is served from disk (a whitelist, read once)."""
    root = resources.files("agent.web").joinpath(folder)
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and pattern.match(p.name)}


class Me(BaseModel):
    user: str
    role: str
    csrf: str | None


class Card(BaseModel):
    key: str
    script: str


class Cards(BaseModel):
    store_name: str
    cards: list[Card]


class Healthz(BaseModel):
    ok: bool
    reason: str


class LoggedOut(BaseModel):
    ok: bool


class Diagnostics(BaseModel):
    generated_at: float
    status: dict[str, Any]
    config: dict[str, Any]
    recent_logs: list[str]
    recent_events: list[dict[str, Any]]
    history: list[dict[str, Any]]


class OpenApi(BaseModel):
    """An OpenAPI 3.1 document (this one)."""

    model_config = {"extra": "allow"}
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


class Login(BaseModel):
    username: str
    password: str


@dataclass
class StaffSite:
    """What the staff routes share: the daemon, its users, sessions, the login limit."""

    ctx: Context
    registry: Sequence[type[Component]]
    users: dict[str, tuple[str, str]]  # name -> (password hash, role)
    sessions: SessionStore
    limiter: RateLimiter
    secure_cookies: bool
    recent_logs: Callable[[], list[str]]
    openapi: Callable[[], dict[str, Any]]

    def __post_init__(self) -> None:
        self.static = _assets("static")
        self.pages = _assets("static", re.compile(r"^(index|login)\.html$"))
        self.card_scripts = _assets("static/cards")

    def _asset(self, table: dict[str, bytes], name: str, request: web.Request) -> web.Response:
        if name not in table:  # "../config.toml" and friends are simply unknown names
            log.warning("http: static %r refused from %s", name[:100], request.remote)
            raise web.HTTPNotFound()
        ctype = _TYPES[name[name.rindex("."):]]
        return web.Response(body=table[name], content_type=ctype,
                            headers={"Cache-Control": "max-age=300", "Content-Security-Policy": _CSP})

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.pages["index.html"], content_type="text/html",
                            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    async def static_file(self, request: web.Request) -> web.Response:
        return self._asset(self.static, request.match_info["name"], request)

    async def card_script(self, request: web.Request) -> web.Response:
        return self._asset(self.card_scripts, request.match_info["name"], request)

    async def login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.pages["login.html"], content_type="text/html",
                            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    def _login_form(self, status: int, error: str, **headers: str) -> web.Response:
        """The login page again, saying what went wrong (a form posted without JavaScript)."""
        page = self.pages["login.html"].replace(b'<p id="error" role="alert"></p>',
                                                f'<p id="error" role="alert">{html.escape(error)}</p>'.encode())
        return web.Response(body=page, status=status, content_type="text/html",
                            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store", **headers})

    async def login(self, request: web.Request) -> web.Response:
        """JSON in, JSON out (the page's script); a plain form post (no JavaScript) gets the page back with the
        error, or a redirect to / with the session cookie."""
        address = request.remote or "?"
        form = request.content_type != "application/json"
        if self.limiter.blocked(address):
            log.warning("login: too many failures from %s, refused", address)
            if form:
                return self._login_form(429, "Too many failed logins: wait a few minutes.", **{"Retry-After": "300"})
            return web.json_response({"error": "too many failed logins; wait a few minutes"}, status=429,
                                     headers={"Retry-After": "300"})
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return web.json_response({"error": "body is not JSON"}, status=400)
        else:
            body = dict(await request.post())
        if not isinstance(body, dict):
            return web.json_response({"error": "expected {\"username\", \"password\"}"}, status=400)
        name, password = str(body.get("username", ""))[:64], str(body.get("password", ""))[:256]
        known = self.users.get(name)
        ok = known is not None and await asyncio.to_thread(verify_password, password, known[0])
        if not ok or known is None:
            self.limiter.record(address)
            log.warning("login: failed for user %r from %s", name, address)
            if form:
                return self._login_form(401, "Wrong user name or password.")
            return web.json_response({"error": "wrong user name or password"}, status=401)
        self.limiter.forget(address)
        session = self.sessions.create(name, known[1])
        log.info("login: %s (%s) from %s", name, known[1], address)
        resp = (web.Response(status=303, headers={"Location": "/"}) if form
                else web.json_response({"user": name, "role": known[1], "csrf": session.csrf}))
        resp.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", secure=self.secure_cookies, path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.drop(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        session: Session | None = session_of(request)
        if session is None:
            return web.json_response({"user": "api-token", "role": "admin", "csrf": None})
        return web.json_response({"user": session.user, "role": session.role, "csrf": session.csrf})

    async def cards(self, request: web.Request) -> web.Response:
        seen: list[str] = []
        for cls in sorted(self.registry, key=lambda c: c.card_order):
            if cls.key in self.ctx.components and cls.card and cls.card not in seen:
                seen.append(cls.card)
        store = self.ctx.config.store
        return web.json_response({"store_name": store.name or store.id, "cards": [
            {"key": c, "script": f"/static/cards/{c}.js"} for c in seen if f"{c}.js" in self.card_scripts]})

    async def status(self, request: web.Request) -> web.Response:
        assert self.ctx.status is not None
        return web.json_response(self.ctx.status())

    async def healthz(self, request: web.Request) -> web.Response:
        outbox = self.ctx.get(OutboxComponent)
        ok, reason = (False, "starting") if outbox is None else await outbox.healthz()
        return web.json_response({"ok": ok, "reason": reason}, status=200 if ok else 503)

    async def diagnostics(self, request: web.Request) -> web.Response:
        assert self.ctx.status is not None
        activity = self.ctx.get(ActivityComponent)
        bundle = {
            "generated_at": time.time(),
            "status": self.ctx.status(),
            "config": masked_config(self.ctx.config),
            "recent_logs": self.recent_logs(),
            "recent_events": list(activity.activity.recent) if activity else [],
            "history": list(activity.activity.history) if activity else [],
        }
        store = self.ctx.config.store
        name = f"o2o-edge-diagnostics-{store.id}-{store.gateway}-{int(time.time())}.json"
        log.info("staff: %s downloaded a diagnostics bundle", user_of(request))
        return web.Response(body=json.dumps(bundle, indent=1, default=str).encode(), content_type="application/json",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def metrics(self, request: web.Request) -> web.Response:
        assert self.ctx.status is not None
        body = render(self.ctx.status(), self.ctx)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def openapi_doc(self, request: web.Request) -> web.Response:
        return web.json_response(self.openapi())


def staff_routes(site: StaffSite, status_model: type[BaseModel]) -> list[Route]:
    s, o, a = Access.STAFF, Access.OPEN, Access.ADMIN
    html, asset = "text/html", "application/javascript"
    return [
        Route("GET", "/healthz", site.healthz, o, "Liveness: 200 while the outbox takes writes, else 503",
              response=Healthz, errors=(503,), tag="staff"),
        Route("GET", "/", site.index, s, "The staff page", content_type=html, tag="staff"),
        Route("GET", "/static/{name}", site.static_file, o, "The page's assets", content_type=asset, errors=(404,),
              params={"name": "file name"}, tag="staff"),
        Route("GET", "/static/cards/{name}", site.card_script, o, "The status cards' scripts", content_type=asset,
              errors=(404,), params={"name": "file name"}, tag="staff"),
        Route("GET", "/login", site.login_page, o, "The login page", content_type=html, tag="staff"),
        Route("POST", "/login", site.login, o, "Log in: JSON gets JSON; a form post (no JavaScript) gets "
              "303 to / with the cookie, or the login page with the error", response=Me, body=Login,
              errors=(400, 401, 429), tag="staff"),
        Route("POST", "/logout", site.logout, o, "Log out", response=LoggedOut, tag="staff"),
        Route("GET", "/api/me", site.me, s, "Who is logged in, and the CSRF token for actions", response=Me,
              tag="staff"),
        Route("GET", "/api/cards", site.cards, s, "The status cards this gateway shows", response=Cards, tag="staff"),
        Route("GET", "/api/status", site.status, s, "Gateway status: every component's snapshot and the health line",
              response=status_model),
        Route("GET", "/api/diagnostics", site.diagnostics, a, "A diagnostics bundle, secrets masked (admin)",
              response=Diagnostics, errors=(403,), tag="staff"),
        Route("GET", "/metrics", site.metrics, s, "Prometheus metrics", content_type="text/plain", tag="staff"),
        Route("GET", "/api/openapi.json", site.openapi_doc, s, "This document", response=OpenApi),
    ]
