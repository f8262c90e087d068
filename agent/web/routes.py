"""HTTP routes as values: who may call them, on which listener, and what they take and answer.

Every route of the daemon is declared here-shaped, by the component that owns
it; the aiohttp app (agent/web/app.py) registers them, the auth middleware
reads `access` from the matched route (never from path prefixes), and the
OpenAPI document (agent/web/openapi.py) is generated from the same values.

    OPEN     anyone (health check, login page, static assets)
    STAFF    a staff or admin login, or `Authorization: Bearer <api_token>`
    ADMIN    an admin login, or the api token
    STATION  the handler checks a kiosk's station token itself
    GUEST    anyone on the guest-facing listener (captive portal, QR codes, signage)
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

__all__ = ["Access", "ComponentHandler", "Handler", "Route", "bearer_token"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A component's route handler: an unbound method, called with the running component and the request.
ComponentHandler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    OPEN = "open"
    STAFF = "staff"
    ADMIN = "admin"
    STATION = "station"
    GUEST = "guest"

    @property
    def guest_facing(self) -> bool:
        """Served on the guest listener too (phones in the store reach it)."""
        return self is Access.GUEST


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler | ComponentHandler  # ComponentHandler when a component's routes() declared it
    access: Access
    summary: str
    # JSON answer (200) and JSON body, as models; None with another `content_type` (a page, a stream).
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()
    # Path parameters: name -> description; every {name} in `path` must be described.
    params: dict[str, str] = field(default_factory=dict)
    tag: str = "gateway"
    success: int = 200  # 302: a redirect (its Location is the answer)
    # A GUEST route the staff listener serves as well when guests have a listener of their own.
    staff_listener_too: bool = False
    # A STATION route the api token does not open (paying is the kiosk's own act).
    station_only: bool = False


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235 2.1)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None
