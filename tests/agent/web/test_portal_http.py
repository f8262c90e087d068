"""The captive portal over real HTTP, with a stand-in for openNDS's ndsctl that records what it was told."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import wait_for

VECTORS = json.loads((Path(__file__).parents[2] / "drivers" / "wifi" / "opennds_vectors.json").read_text())
MAC = "aa:bb:cc:dd:ee:ff"


@pytest.fixture
def ndsctl(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "ndsctl.log"
    script = tmp_path / "ndsctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "Client authenticated"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def portal_config(factory: Any, ndsctl_path: Path, **portal: Any) -> Any:
    return factory(wifi={"portal": {"fas_secure_level": 1, "ndsctl": str(ndsctl_path), "session_minutes": 120,
                                    "allowed_redirect_hosts": ["www.example-shop.fr"], **portal}},
                   store={"id": "test-store", "gateway": "gw-test", "name": "Boutique Odéon"},
                   mqtt={"enabled": False})


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="(p|csrf)" value="([^"]+)"', page))


async def open_portal(http: aiohttp.ClientSession, base: str, query: str, lang: str = "fr") -> tuple[str, dict[str, str]]:
    async with http.get(f"{base}/portal/?{query}", headers={"Accept-Language": lang}) as r:
        assert r.status == 200, await r.text()
        page = await r.text()
    return page, form_fields(page)


def outbox(agent: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(agent.config.storage.path)
    try:
        return [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    finally:
        conn.close()


async def test_consent_flow_in_french_and_english(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, log = ndsctl
    ra = await start_agent(portal_config(config_factory, script))
    base = ra.base_url
    query = "fas=" + VECTORS["level1"]["fas"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page, fields = await open_portal(http, base, query, "fr-FR,fr;q=0.9,en;q=0.8")
        assert "Bienvenue chez Boutique Odéon" in page and "sessions de 120 minutes" in page
        assert 'type="checkbox" name="marketing" value="1">' in page  # unticked by default
        async with http.post(f"{base}/portal/?lang=fr", data={**fields, "wifi": "1", "personalisation": "1",
                                                                "loyalty": "12345678"}) as r:
            assert r.status == 200
            done = await r.text()
        assert "Vous êtes connecté" in done and "vérifierons votre carte" in done
        assert log.read_text().split()[:7] == ["auth", MAC, "120", "0", "0", "0", "0"]
        page_en, _ = await open_portal(http, base, query, "en-GB,en;q=0.9")
        assert "Welcome to Boutique Odéon" in page_en
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.start"), 5)
    given = next(e for e in ra.agent["alarms"].activity.recent if e["kind"] == "consent.given")
    assert given["data"]["choices"] == {"wifi": True, "marketing": False, "personalisation": True}
    assert given["data"]["text_version"] and given["data"]["lang"] == "fr"
    assert given["data"]["loyalty"] == "12345678" and given["data"]["loyalty_verified"] is False


async def test_without_personalisation_no_raw_mac_anywhere(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, _ = ndsctl
    ra = await start_agent(portal_config(config_factory, script))
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, ra.base_url, "fas=" + VECTORS["level1"]["fas"], "en")
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
    await wait_for(lambda: ra.agent.outbox.committed >= 3, 5)
    await ra.stop()
    text = json.dumps(outbox(ra.agent)) + json.dumps(await _consents(ra.agent))
    assert MAC not in text and MAC.upper() not in text
    start = next(e for e in outbox(ra.agent) if e["kind"] == "wifi.session.start")
    assert len(start["data"]["device"]) == 16 and start["data"]["personalised"] is False


async def _consents(agent: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(agent["wifi"].consents.path)
    try:
        cur = conn.execute("SELECT * FROM consents")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


async def test_withdrawal_forgets_and_tells_the_cloud(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, _ = ndsctl
    ra = await start_agent(portal_config(config_factory, script))
    base = ra.base_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        _, fields = await open_portal(http, base, "fas=" + VECTORS["level1"]["fas"], "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1", "personalisation": "1",
                                                      "loyalty": "jane@example.com"}) as r:
            assert r.status == 200
        (row,) = await _consents(ra.agent)
        assert row["mac"] == MAC and row["loyalty"] == "jane@example.com"
        async with http.get(f"{base}/portal/withdraw") as r:
            token = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        async with http.post(f"{base}/portal/withdraw", data={"csrf": token}) as r:
            assert r.status == 200 and "deleted" in await r.text()
    (row,) = await _consents(ra.agent)
    assert row["mac"] is None and row["loyalty"] is None and row["withdrawn_at"]
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("consent.withdrawn"), 5)


async def test_rfc8908_api_before_and_after(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, _ = ndsctl
    ra = await start_agent(portal_config(config_factory, script, fas_secure_level=0))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/portal/api", headers={"Accept": "application/captive+json"}) as r:
            assert r.headers["Content-Type"].startswith("application/captive+json")
            before = json.loads(await r.text())
        assert before["captive"] is True and before["user-portal-url"].endswith("/portal/")
        _, fields = await open_portal(http, base, f"clientip=127.0.0.1&clientmac={MAC}&tok=1a2b3c4d", "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
        async with http.get(f"{base}/portal/api") as r:
            after = json.loads(await r.text())
    assert after["captive"] is False and 7100 < after["seconds-remaining"] <= 7200


async def test_hostile_input(ndsctl, config_factory, start_agent, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    script, log = ndsctl
    ra = await start_agent(portal_config(config_factory, script))
    base = ra.base_url
    good = "fas=" + VECTORS["level1"]["fas"]
    async with aiohttp.ClientSession() as http:
        # forged FAS tokens
        for q in ("fas=!!!", "fas=" + "QUJD" * 10, "nothing=1"):
            async with http.get(f"{base}/portal/?{q}") as r:
                assert r.status == 400
        # script injection in a field: refused and never reflected raw
        _, fields = await open_portal(http, base, good, "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1",
                                                      "loyalty": "<script>alert(1)</script>"}) as r:
            page = await r.text()
        assert "<script>" not in page and "does not look right" in page
        # a missing or wrong CSRF token, and a replayed form
        async with http.post(f"{base}/portal/", data={"p": fields["p"], "csrf": "forged", "wifi": "1"}) as r:
            assert r.status == 403
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
            assert "Continue browsing" not in await r.text()  # originurl host not allowed: no link offered
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 403  # replayed
        # an oversized form
        async with http.post(f"{base}/portal/", data=b"x" * 20_000,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 413
        # a burst of 1,000 requests from one client: rate limited, the daemon unaffected
        statuses: list[int] = []

        async def hit() -> None:
            async with http.get(f"{base}/portal/api") as resp:
                statuses.append(resp.status)

        await asyncio.gather(*(hit() for _ in range(1000)))
        assert statuses.count(429) > 900 and statuses.count(200) <= 60
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
    assert len(log.read_text().splitlines()) == 1  # only the one good form authenticated a client
    assert "rate limit" in caplog.text or ra.agent["wifi"].wifi is not None


async def test_open_redirect_only_to_allowed_hosts(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, _ = ndsctl
    ra = await start_agent(portal_config(config_factory, script, fas_secure_level=0))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        for redir, offered in (("https://www.example-shop.fr/promo", True), ("https://evil.example/phish", False),
                               ("javascript:alert(1)", False), ("//www.example-shop.fr@evil.example/", False)):
            _, fields = await open_portal(http, base, f"clientip=10.0.0.9&clientmac={MAC}&tok=1&redir={redir}", "en")
            async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
                page = await r.text()
            assert ("Continue browsing" in page) is offered, redir
            if not offered:
                assert "evil.example" not in page


async def test_level3_and_a_failing_ndsctl(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "ndsctl"
    broken.write_text("#!/bin/sh\necho 'ndsctl: opennds is not running' >&2\nexit 1\n")
    broken.chmod(0o755)
    ra = await start_agent(portal_config(config_factory, broken, fas_secure_level=3, faskey=VECTORS["faskey"]))
    from urllib.parse import urlsplit

    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, ra.base_url, urlsplit(VECTORS["level3"]["url"]).query, "en")
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 503
    assert ra.agent["wifi"].wifi.auth_failures == 1


async def test_store_logo(ndsctl, config_factory, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script, _ = ndsctl
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    ra = await start_agent(portal_config(config_factory, script, logo=str(logo)))
    async with aiohttp.ClientSession() as http:
        page, _ = await open_portal(http, ra.base_url, "fas=" + VECTORS["level1"]["fas"], "en")
        assert 'src="/portal/logo"' in page
        async with http.get(f"{ra.base_url}/portal/logo") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png" and (await r.read()) == logo.read_bytes()


async def test_renewal_and_logout(ndsctl, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    script, log = ndsctl
    ra = await start_agent(portal_config(config_factory, script, fas_secure_level=0))
    base = ra.base_url
    query = f"clientip=127.0.0.1&clientmac={MAC}&tok=1"
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # the second visit renews the session
            _, fields = await open_portal(http, base, query, "en")
            async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
                page = await r.text()
        assert len(ra.agent["wifi"].wifi.sessions) == 1
        await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.renew"), 5)
        token = re.search(r'action="/portal/logout[^"]*"><input type="hidden" name="csrf" value="([^"]+)"', page)
        assert token is not None
        async with http.post(f"{base}/portal/logout", data={"csrf": token.group(1)}) as r:
            assert r.status == 200 and "disconnected" in await r.text()
        async with http.get(f"{base}/portal/api") as r:
            assert json.loads(await r.text())["captive"] is True
    assert log.read_text().splitlines()[-1] == f"deauth {MAC}"
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.end"), 5)
