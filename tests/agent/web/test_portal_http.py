"""The captive portal over real HTTP, behind a stand-in for openNDS's ndsctl that answers as the real one does
(tests/drivers/wifi/fake_ndsctl.py: its JSON, output and exit codes, cited from openNDS's sources), with FAS
queries built the way openNDS builds them (tests/drivers/wifi/make_opennds_vectors.py)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.wifi.fas import rhid, token_hid
from tests.conftest import wait_for
from tests.drivers.wifi import fake_ndsctl, make_opennds_vectors

FASKEY = make_opennds_vectors.FASKEY
MAC = "aa:bb:cc:dd:ee:ff"
PEER = "127.0.0.1"  # the tests' phone: aiohttp's client on loopback


class Nds:
    """openNDS as the portal sees it: a state file behind a faithful ndsctl."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "nds-state.json"
        fake_ndsctl.write_state(self.state, faskey=FASKEY, gatewayname=make_opennds_vectors.GW_NAME)
        self.path = tmp_path / "ndsctl"
        self.path.write_text(f'#!/bin/sh\nFAKE_NDSCTL_STATE="{self.state}" exec {sys.executable} '
                             f'{Path(fake_ndsctl.__file__)} "$@"\n')
        self.path.chmod(0o755)

    def add(self, ip: str = PEER, mac: str = MAC, **extra: Any) -> dict[str, Any]:
        return fake_ndsctl.add_client(self.state, ip, mac, **extra)

    def query(self, level: int, client: dict[str, Any], **override: str) -> str:
        args = {"ip": client["ip"], "mac": client["mac"], "token": client["token"], **override}
        return make_opennds_vectors.query(level, **args)

    def calls(self, command: str | None = None) -> list[list[str]]:
        calls = fake_ndsctl.read_state(self.state)["calls"]
        return [c["argv"] for c in calls if command is None or c["argv"][0] == command]

    def client(self, mac: str = MAC) -> dict[str, Any] | None:
        return next((c for c in fake_ndsctl.read_state(self.state)["clients"] if c["mac"] == mac), None)


@pytest.fixture
def nds(tmp_path: Path) -> Nds:
    return Nds(tmp_path)


def portal_config(factory: Any, nds: Nds, **portal: Any) -> Any:
    return factory(wifi={"portal": {"fas_secure_level": 1, "ndsctl": str(nds.path), "session_minutes": 120,
                                    "faskey": FASKEY, "allowed_redirect_hosts": ["www.example-shop.fr"], **portal}},
                   store={"id": "test-store", "gateway": "gw-test", "name": "Boutique Odéon"},
                   mqtt={"enabled": False})


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="(p|csrf)" value="([^"]+)"', page))


async def open_portal(http: aiohttp.ClientSession, base: str, query: str, lang: str = "fr") -> tuple[str, dict[str, str]]:
    async with http.get(f"{base}/portal/?{query}", headers={"Accept-Language": lang}) as r:
        assert r.status == 200, await r.text()
        page = await r.text()
    return page, form_fields(page)


async def visit_status(http: aiohttp.ClientSession, base: str, query: str) -> tuple[int, str]:
    async with http.get(f"{base}/portal/?{query}", headers={"Accept-Language": "en"}) as r:
        return r.status, await r.text()


def outbox(agent: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(agent.config.storage.path)
    try:
        return [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    finally:
        conn.close()


async def _consents(agent: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(agent.config.storage.path.parent / "consents.db")
    try:
        cur = conn.execute("SELECT * FROM consents")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


async def test_consent_flow_in_french_and_english(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds))
    base = ra.base_url
    client = nds.add()
    query = nds.query(1, client)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page, fields = await open_portal(http, base, query, "fr-FR,fr;q=0.9,en;q=0.8")
        assert "Bienvenue chez Boutique Odéon" in page and "sessions de 120 minutes" in page
        assert "Les deux autres sont facultatives" in page  # the first box is the terms, the others optional
        assert 'type="checkbox" name="marketing" value="1">' in page  # unticked by default
        page_en, _ = await open_portal(http, base, query, "en-GB,en;q=0.9")
        assert "Welcome to Boutique Odéon" in page_en and "The other two are optional" in page_en
        async with http.post(f"{base}/portal/?lang=fr", data={**fields, "wifi": "1", "personalisation": "1",
                                                                "loyalty": "12345678"}) as r:
            assert r.status == 200
            done = await r.text()
        assert "Vous êtes connecté" in done and "vérifierons votre carte" in done
        assert re.search(r'id="time-left">Votre session se termine dans 120 minutes', done)
    # looked up by rhid (the faskey is configured), authenticated by the token openNDS reported, never by MAC
    assert nds.calls("json")[0][1] == rhid(token_hid(client["token"]), FASKEY)
    (auth,) = nds.calls("auth")
    assert auth[1:7] == [client["token"], "120", "0", "0", "0", "0"]
    assert nds.client()["state"] == "Authenticated"  # type: ignore[index]
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.start"), 5)
    given = next(e for e in ra.agent["alarms"].activity.recent if e["kind"] == "consent.given")
    assert given["data"]["choices"] == {"wifi": True, "marketing": False, "personalisation": True}
    assert given["data"]["text_version"] and given["data"]["lang"] == "fr"
    assert given["data"]["loyalty"] == "12345678" and given["data"]["loyalty_verified"] is False


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
async def test_the_honest_guest_gets_online_at_every_level(level: int, nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=level))
    client = nds.add(mac=f"02:00:00:00:00:0{level}")
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, ra.base_url, nds.query(level, client), "en")
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200 and 'id="success"' in await r.text()
    assert nds.client(client["mac"])["state"] == "Authenticated"  # type: ignore[index]
    assert len(nds.calls("auth")) == 1 and sum(ra.agent["wifi"].wifi.refused.values()) == 0


@pytest.mark.parametrize("level", [1, 4])
async def test_without_the_faskey_levels_1_and_4_still_work_and_refuse_forgeries(  # type: ignore[no-untyped-def]
        level: int, nds: Nds, config_factory, start_agent) -> None:
    """DESIGN.md's `faskey = ""`: openNDS then uses a key of its own (src/conf.c generates one), so rhid cannot be
    computed here; the guest is found by the address the page was asked from, and the hid must still match."""
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=level, faskey=""))
    base, wifi = ra.base_url, ra.agent["wifi"].wifi
    me = nds.add()
    other = nds.add(ip="192.168.8.77", mac="66:55:44:33:22:11")
    async with aiohttp.ClientSession() as http:
        assert (await visit_status(http, base, nds.query(level, me, token="0badc0de")))[0] == 403  # wrong hid
        assert (await visit_status(http, base, nds.query(level, other)))[0] == 403  # another device's query
        _, fields = await open_portal(http, base, nds.query(level, me), "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200 and 'id="success"' in await r.text()
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:  # the form replayed
            assert r.status == 403
        await visit_status(http, base, nds.query(level, me))  # the query again: openNDS says Authenticated
    assert nds.calls("json")[0][1] == PEER
    assert [a[1] for a in nds.calls("auth")] == [me["token"]] and nds.client()["state"] == "Authenticated"  # type: ignore[index]
    assert nds.client(other["mac"])["state"] == "Preauthenticated"  # type: ignore[index]
    assert wifi.refused["token"] == 1 and wifi.refused["peer"] == 1
    assert wifi.refused["replay"] == 1 and wifi.refused["state"] == 1


async def test_forged_replayed_and_foreign_queries_are_refused(nds: Nds, config_factory, start_agent,  # type: ignore[no-untyped-def]
                                                               caplog: pytest.LogCaptureFixture) -> None:
    ra = await start_agent(portal_config(config_factory, nds))
    base, wifi = ra.base_url, ra.agent["wifi"].wifi
    me = nds.add()
    other = nds.add(ip="192.168.8.77", mac="66:55:44:33:22:11")
    async with aiohttp.ClientSession() as http:
        # a random hid (no such token): openNDS knows no client by its rhid
        status, page = await visit_status(http, base, nds.query(1, me, token="0badc0de"))
        assert status == 403 and 'id="refused"' in page and "Reconnect to the Wi-Fi" in page
        # another device's query (its IP and MAC), sent from this phone
        status, _ = await visit_status(http, base, nds.query(1, other))
        assert status == 403
        # a client openNDS does not know at all
        status, _ = await visit_status(http, base, nds.query(1, {"ip": PEER, "mac": "0a:0b:0c:0d:0e:0f",
                                                                 "token": "12345678"}))
        assert status == 403
        # a query naming this phone's IP but another MAC than openNDS has for it
        status, _ = await visit_status(http, base, nds.query(1, me, mac="0a:0b:0c:0d:0e:0f"))
        assert status == 403
        # garbage
        status, _ = await visit_status(http, base, "fas=!!!")
        assert status == 400
        # the honest visit, then a replayed form
        _, fields = await open_portal(http, base, nds.query(1, me), "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 403
        # openNDS dropped the client (logout) and gave the device a new token: the old query is dead
        nds_state = fake_ndsctl.read_state(nds.state)
        nds_state["clients"] = [c for c in nds_state["clients"] if c["mac"] != MAC]
        nds.state.write_text(json.dumps(nds_state))
        nds.add()
        status, _ = await visit_status(http, base, nds.query(1, me))
        assert status == 403
    assert wifi.refused["unknown"] == 3 and wifi.refused["peer"] == 1 and wifi.refused["token"] == 1
    assert wifi.refused["malformed"] == 1 and wifi.refused["replay"] == 1
    assert len(nds.calls("auth")) == 1  # only the honest guest was let online
    assert "portal: refused unknown from 127.0.0.1" in caplog.text
    status_doc = await ra.agent.status()
    assert status_doc["wifi"]["refused"]["unknown"] == 3
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics",
                                                         headers={"Authorization": "Bearer test-token"}) as r:
        assert 'o2o_portal_refused_total{reason="unknown"} 3.0' in await r.text()


async def test_without_personalisation_no_raw_mac_anywhere(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds))
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, ra.base_url, nds.query(1, nds.add()), "en")
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
    await wait_for(lambda: ra.agent.outbox.committed >= 3, 5)
    await ra.stop()
    text = json.dumps(outbox(ra.agent)) + json.dumps(await _consents(ra.agent))
    assert MAC not in text and MAC.upper() not in text
    start = next(e for e in outbox(ra.agent) if e["kind"] == "wifi.session.start")
    assert len(start["data"]["device"]) == 16 and start["data"]["personalised"] is False


async def test_withdrawal_explains_forgets_and_tells_the_cloud(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds))
    base = ra.base_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        _, fields = await open_portal(http, base, nds.query(1, nds.add()), "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1", "personalisation": "1",
                                                      "loyalty": "jane@example.com"}) as r:
            assert r.status == 200
        (row,) = await _consents(ra.agent)
        assert row["mac"] == MAC and row["loyalty"] == "jane@example.com"  # openNDS's MAC for the client
        async with http.get(f"{base}/portal/withdraw") as r:
            page = await r.text()
        assert "your choices, your loyalty number or e-mail, and your phone" in page
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        async with http.post(f"{base}/portal/withdraw", data={"csrf": token}) as r:
            assert r.status == 200 and "deleted" in await r.text()
    (row,) = await _consents(ra.agent)
    assert row["mac"] is None and row["loyalty"] is None and row["withdrawn_at"]
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("consent.withdrawn"), 5)


async def test_rfc8908_api_before_and_after(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=0))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/portal/api", headers={"Accept": "application/captive+json"}) as r:
            assert r.headers["Content-Type"].startswith("application/captive+json")
            before = json.loads(await r.text())
        assert before["captive"] is True and before["user-portal-url"].endswith("/portal/")
        _, fields = await open_portal(http, base, nds.query(0, nds.add()), "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
        async with http.get(f"{base}/portal/api") as r:
            after = json.loads(await r.text())
    assert after["captive"] is False and 7100 < after["seconds-remaining"] <= 7200


async def test_a_page_for_people_without_a_query(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds))
    async with aiohttp.ClientSession() as http, http.get(f"{ra.base_url}/portal/",
                                                         headers={"Accept-Language": "fr"}) as r:
        assert r.status == 200 and "Connectez-vous au Wi-Fi de Boutique Odéon" in await r.text()


async def test_hostile_input(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        for q in ("fas=!!!", "fas=" + "QUJD" * 10, "nothing=1"):
            async with http.get(f"{base}/portal/?{q}") as r:
                assert r.status == 400
        # script injection in a field: refused and never reflected raw
        _, fields = await open_portal(http, base, nds.query(1, nds.add()), "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1",
                                                      "loyalty": "<script>alert(1)</script>"}) as r:
            page = await r.text()
        assert "<script>" not in page and "does not look right" in page
        async with http.post(f"{base}/portal/", data={"p": fields["p"], "csrf": "forged", "wifi": "1"}) as r:
            assert r.status == 403
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
            assert "Continue browsing" not in await r.text()  # originurl host not allowed: no link offered
        async with http.post(f"{base}/portal/", data=b"x" * 20_000,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 413
        statuses: list[int] = []

        async def hit() -> None:
            async with http.get(f"{base}/portal/api") as resp:
                statuses.append(resp.status)

        await asyncio.gather(*(hit() for _ in range(1000)))
        assert statuses.count(429) > 900 and statuses.count(200) <= 60
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
    assert len(nds.calls("auth")) == 1  # only the one good form authenticated a client


async def test_open_redirect_only_to_allowed_hosts(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=0))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        for i, (redir, offered) in enumerate((("https://www.example-shop.fr/promo", True),
                                              ("https://evil.example/phish", False), ("javascript:alert(1)", False),
                                              ("//www.example-shop.fr@evil.example/", False))):
            client = nds.add(mac=f"02:00:00:00:00:1{i}")
            query = nds.query(0, client).replace("&redir=", "&old=") + "&redir=" + redir
            _, fields = await open_portal(http, base, query, "en")
            async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
                page = await r.text()
            assert ("Continue browsing" in page) is offered, redir
            if not offered:
                assert "evil.example" not in page
            await ra.agent["wifi"].wifi.logout(PEER)  # the next guest on this test's only address


async def test_openNDS_not_answering(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=3))
    client = nds.add()
    fake_ndsctl.update_state(nds.state, running=False)
    async with aiohttp.ClientSession() as http:
        status, page = await visit_status(http, ra.base_url, nds.query(3, client))
    assert status == 503 and "not answering" in page
    assert ra.agent["wifi"].wifi.refused["ndsctl"] == 1 and not nds.calls("auth")


async def test_store_logo(nds: Nds, config_factory, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    ra = await start_agent(portal_config(config_factory, nds, logo=str(logo)))
    async with aiohttp.ClientSession() as http:
        page, _ = await open_portal(http, ra.base_url, nds.query(1, nds.add()), "en")
        assert 'src="/portal/logo"' in page
        async with http.get(f"{ra.base_url}/portal/logo") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png" and (await r.read()) == logo.read_bytes()


async def test_back_on_the_portal_and_logout(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, fas_secure_level=0))
    base = ra.base_url
    query = nds.query(0, nds.add())
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, base, query, "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200
        page, _ = await open_portal(http, base, query, "en")  # the phone opens the portal again while online
        assert 'id="success"' in page and 'id="time-left"' in page
        assert len(ra.agent["wifi"].wifi.sessions) == 1 and len(nds.calls("auth")) == 1
        token = re.search(r'action="/portal/logout[^"]*"><input type="hidden" name="csrf" value="([^"]+)"', page)
        assert token is not None
        async with http.post(f"{base}/portal/logout", data={"csrf": token.group(1)}) as r:
            assert r.status == 200 and "disconnected" in await r.text()
        async with http.get(f"{base}/portal/api") as r:
            assert json.loads(await r.text())["captive"] is True
    assert nds.calls("deauth")[-1] == ["deauth", MAC] and nds.client() is None  # openNDS forgets the client
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.end"), 5)


async def test_a_guest_listener_serves_only_the_portal(nds: Nds, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    guest_port = free_port()
    ra = await start_agent(portal_config(config_factory, nds, listen=f"127.0.0.1:{guest_port}"))
    guest = f"http://127.0.0.1:{guest_port}"
    h = {"Authorization": "Bearer test-token"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{guest}/portal/api") as r:
            assert r.status == 200 and json.loads(await r.text())["user-portal-url"] == f"{guest}/portal/"
        async with http.get(f"{guest}/healthz") as r:
            assert r.status == 200
        for path in ("/", "/login", "/api/status", "/metrics", "/api/openapi.json", "/static/app.js"):
            async with http.get(f"{guest}{path}", headers=h, allow_redirects=False) as r:
                assert r.status == 404, path  # phones never reach the staff side, even with the token
        async with http.get(f"{ra.base_url}/portal/api") as r:
            assert r.status == 404  # and the staff listener no longer serves guests
        async with http.get(f"{ra.base_url}/api/status", headers=h) as r:
            assert r.status == 200


async def test_the_demo_plays_opennds(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    cfg = config_factory(wifi={"portal": {"fas_secure_level": 0, "ndsctl": "demo"}}, mqtt={"enabled": False})
    ra = await start_agent(cfg, demo=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ra.base_url}/portal/demo", headers={"Accept-Language": "en"}) as r:
            assert r.status == 200 and "authaction=" in str(r.url)  # redirected as openNDS would
            fields = form_fields(await r.text())
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1"}) as r:
            assert r.status == 200 and 'id="success"' in await r.text()
    plain = await start_agent(config_factory(wifi={"portal": {"fas_secure_level": 0, "ndsctl": "demo"}},
                                             mqtt={"enabled": False}, storage={"path": str(cfg.storage.path) + "2"}))
    async with aiohttp.ClientSession() as http, http.get(f"{plain.base_url}/portal/demo") as r:
        assert r.status == 404  # only with --demo
