"""Staff logins for the status page: scrypt password hashes, server-side sessions, CSRF, rate limits.

Passwords are stored only as `scrypt$N$r$p$salt$hash` (base64) in the config
(`o2o-edge hash-password` makes one). A login creates a server-side session:
the cookie holds a random id (HttpOnly, SameSite=Strict, Secure over TLS) and
the session holds the role and a CSRF token that every state-changing request
must echo in `X-CSRF-Token`. Failed logins are limited per client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

__all__ = [
    "FAILURE_WINDOW_S", "MAX_FAILURES", "SESSION_KEY", "Session", "SessionStore", "hash_password", "session_of",
    "user_of", "verify_password",
]

# scrypt cost: ~50 ms and 16 MiB on a Raspberry Pi 4; slow for a guesser, fine for a login.
_N, _R, _P = 2**14, 8, 1
SESSION_TTL_S = 8 * 3600  # a shift
MAX_SESSIONS = 1000
# Failed logins allowed per client address per window before 429.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected),
                                maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(slots=True)
class Session:
    id: str = field(repr=False)  # the cookie: a secret, never in a log line
    user: str
    role: str  # "staff" (read-only) or "admin" (actions)
    csrf: str = field(repr=False)
    expires: float


class SessionStore:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str, role: str) -> Session:
        session = Session(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(24), self._clock() + SESSION_TTL_S)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)  # the oldest login goes first
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


# The logged-in session of a request, set by the auth middleware (absent for the api token).
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION_KEY)


def user_of(request: web.Request) -> str:
    """Who did it, for logs and acknowledgements: the login's name, or "api-token"."""
    session = session_of(request)
    return session.user if session else "api-token"
