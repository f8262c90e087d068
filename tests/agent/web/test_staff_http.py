"""The staff side over real HTTP: logins, sessions, CSRF, roles, rate limits, hostile requests, metrics, OpenAPI."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import jsonschema
import pytest

from agent.web.auth import (
    FAILURE_WINDOW_S,
    MAX_FAILURES,
    SessionStore,
    hash_password,
    verify_password,
)
from agent.web.openapi import response_schema
from agent.web.ratelimit import RateLimiter
from tests.conftest import wait_for

STAFF_HASH = hash_password("staff-pass")
ADMIN_HASH = hash_password("admin-pass")


def config(factory: Any) -> Any:
    return factory(
        http={"listen": "127.0.0.1:0", "api_token": "test-token", "users": [
            {"name": "staff", "role": "staff", "password_hash": STAFF_HASH},
            {"name": "boss", "role": "admin", "password_hash": ADMIN_HASH}]},
        rfid={"readers": [{"id": "r1", "port": "/dev/null-no-tty", "protocol": "em4100", "baudrate": 9600,
                           "zones": {1: "checkout-1"}}]},
        checkout={"stations": [{"id": "sco-1", "zones": ["checkout-1"], "token": "kiosk"}],
                  "gates": [{"id": "exit-1", "zones": ["checkout-1"]}]},
        mqtt={"enabled": False},
    )


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{base}/login", json={"username": user, "password": password}) as r:
        return r.status, await r.json()


async def validator(http: aiohttp.ClientSession, base: str, path: str, method: str = "get",
                    headers: dict[str, str] | None = None) -> Any:
    """A validator for a route's 200 answer, from the OpenAPI document the gateway serves."""
    async with http.get(f"{base}/api/openapi.json", headers=headers) as r:
        spec = await r.json()
    return jsonschema.Draft202012Validator(response_schema(spec, path, method))


async def test_login_roles_csrf_and_actions(config_factory, start_agent, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    base = ra.base_url
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login"
        async with anon.get(f"{base}/api/status") as r:
            assert r.status == 401
        with caplog.at_level(logging.WARNING):
            assert (await login(anon, base, "staff", "wrong"))[0] == 401
        assert "login: failed for user 'staff'" in caplog.text
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as staff:  # unsafe: IP host
        status, me = await login(staff, base, "staff", "staff-pass")
        assert status == 200 and me["role"] == "staff"
        cookie = next(c for c in staff.cookie_jar if c.key == "o2o_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with staff.get(f"{base}/") as r:
            assert r.status == 200 and "Content-Security-Policy" in r.headers
        async with staff.get(f"{base}/api/status") as r:
            (await validator(staff, base, "/api/status")).validate(await r.json())
        async with staff.post(f"{base}/api/actions/readers/r1/pause", headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 403 and "admin" in (await r.json())["error"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as boss:
        _, me = await login(boss, base, "boss", "admin-pass")
        async with boss.post(f"{base}/api/actions/readers/r1/pause") as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with boss.post(f"{base}/api/actions/readers/r1/pause", headers={"X-CSRF-Token": "forged"}) as r:
            assert r.status == 403
        async with boss.post(f"{base}/api/actions/readers/r1/pause", headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 200
            check = await validator(boss, base, "/api/actions/readers/{reader}/{action}", "post")
            check.validate(doc := await r.json())
            assert doc["state"] == "paused"
        async with boss.post(f"{base}/api/actions/readers/nope/pause", headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 404
        async with boss.get(f"{base}/api/diagnostics") as r:
            assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
            bundle = await r.json(content_type=None)
            assert bundle["config"]["http"]["api_token"] == "***"
            assert all(u["password_hash"] == "***" for u in bundle["config"]["http"]["users"])
            assert bundle["config"]["checkout"]["stations"][0]["token"] == "***"
            assert "kiosk" not in str(bundle["config"]) and bundle["recent_logs"]
        async with boss.post(f"{base}/logout", headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 200
        async with boss.get(f"{base}/api/status") as r:
            assert r.status == 401  # the session is gone server-side


async def test_machine_clients_and_openapi_match_real_responses(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    base = ra.base_url
    h = {"Authorization": "Bearer test-token"}
    from agent.events import Event

    ra.agent.hub.publish(Event("gate.alarm", "exit-1", {"gate": "exit-1", "zone": "checkout-1", "epc": "01",
                                                        "gtin": None, "name": "Unknown item"}))
    await wait_for(lambda: ra.agent["alarms"].activity.alarms, 5)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/openapi.json", headers=h) as r:
            spec = await r.json()
        assert spec["openapi"] == "3.1.0"
        for path, template in [("/api/status", None), ("/api/history", None), ("/api/me", None),
                               ("/api/alarms", None), ("/api/checkout/sco-1/basket", "/api/checkout/{station}/basket")]:
            async with http.get(f"{base}{path}", headers=h) as r:
                assert r.status == 200, path
                (await validator(http, base, template or path, headers=h)).validate(await r.json())
        alarm_id = ra.agent["alarms"].activity.alarms[0]["id"]
        async with http.post(f"{base}/api/actions/alarms/{alarm_id}/ack", headers=h) as r:
            assert r.status == 200 and (await r.json())["acknowledged"]["by"] == "api-token"
        async with http.get(f"{base}/metrics", headers=h) as r:
            text = await r.text()
        for name in ("o2o_reader_reads_total", "o2o_outbox_depth", "o2o_mqtt_connected", "o2o_config_version",
                     "o2o_events_total", "o2o_dropped_total", "o2o_process_resident_bytes", "o2o_health_level"):
            assert name in text, name
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 401


async def test_hostile_requests(config_factory, start_agent, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        for path in ("/static/..%2Fconfig.toml", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/app.py",
                     "/static/kiosk.html"):
            async with http.get(f"{base}{path}") as r:
                assert r.status == 404, path
        async with http.get(f"{base}/static/app.js") as r:
            assert r.status == 200
        with caplog.at_level(logging.INFO):
            async with http.post(f"{base}/login", data=b"x" * 200_000,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status == 413
        assert "413" in caplog.text
        # over the limit by its Content-Length: refused whole, never parsed from the part that had arrived (a
        # handover answered "body is not JSON" (400) to this one)
        big = b'{"epcs": ["' + b"3034" * 75_000 + b'"]}'
        async with http.post(f"{base}/api/collect/nope/handover", data=big, headers={
                "Authorization": "Bearer test-token", "Content-Type": "application/json"}) as r:
            assert r.status == 413 and "Maximum request body size 65536 exceeded" in (await r.json())["error"]
        async with http.get(f"{base}/api/status", headers={"Authorization": "bearer test-token"}) as r:
            assert r.status == 200  # the scheme's case does not matter (RFC 7235 2.1)
        async with http.head(f"{base}/api/status", headers={"Authorization": "BEARER test-token"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        async with http.head(f"{base}/api/status") as r:
            assert r.status == 401
        async with http.get(f"{base}/api/status", cookies={"o2o_session": "expired-or-made-up"}) as r:
            assert r.status == 401
        for _ in range(5):
            assert (await login(http, base, "boss", "guess"))[0] == 401
        assert (await login(http, base, "boss", "admin-pass"))[0] == 429  # even the right password, for a while


async def test_healthz_reports_an_unwritable_outbox(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ra.base_url}/healthz") as r:
            assert r.status == 200
        from agent.errors import StorageError

        async def broken() -> None:
            raise StorageError("outbox not writable: disk I/O error")

        ra.agent.outbox.check_writable = broken  # the SD card failing under us
        async with http.get(f"{ra.base_url}/healthz") as r:
            assert r.status == 503 and "disk I/O error" in (await r.json())["reason"]


def test_password_hashes() -> None:
    h = hash_password("s3cret-pass")
    assert h.startswith("scrypt$16384$8$1$") and "s3cret" not in h
    assert verify_password("s3cret-pass", h) and not verify_password("s3cret-pasS", h)
    assert not verify_password("x", "plain-text-password") and not verify_password("x", "scrypt$1$2$3$!!$!!")


def test_sessions_expire_and_limiter_forgets() -> None:
    now = [0.0]
    store = SessionStore(clock=lambda: now[0])
    s = store.create("u", "staff")
    assert store.get(s.id) is s
    now[0] += 8 * 3600 + 1
    assert store.get(s.id) is None
    limiter = RateLimiter(MAX_FAILURES, FAILURE_WINDOW_S, clock=lambda: now[0])
    for _ in range(5):
        limiter.record("1.2.3.4")
    assert limiter.blocked("1.2.3.4") and not limiter.blocked("5.6.7.8")
    now[0] += 301
    assert not limiter.blocked("1.2.3.4")


async def test_https_with_a_configured_certificate(tmp_path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    import ssl

    from tests.agent.sync.test_connection import _cert, _write

    ca_key, ca = _cert("o2o test CA", None, None, ca=True)
    ca_crt, _ = _write(tmp_path / "ca", ca_key, ca)
    key, cert = _cert("gateway", ca_key, ca.subject, ca=False, san="127.0.0.1")
    crt_path, key_path = _write(tmp_path / "https", key, cert)
    cfg = config(config_factory)
    http_cfg = cfg.http.model_copy(update={"tls_cert": crt_path, "tls_key": key_path})
    ra = await start_agent(cfg.model_copy(update={"http": http_cfg}))
    ctx = ssl.create_default_context(cafile=str(ca_crt))
    base = f"https://127.0.0.1:{ra.agent.http_port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/healthz", ssl=ctx) as r:
            assert r.status == 200
        async with http.post(f"{base}/login", json={"username": "boss", "password": "admin-pass"}, ssl=ctx) as r:
            assert r.status == 200
            assert "Secure" in r.headers["Set-Cookie"]
