"""Dynamic QR codes through the real daemon: qr/set over a real broker, the redirect, the unknown code, the
refused targets, scan events (a member only with consent), a burst from one phone, restart, and the printed
SVG read back by an independent decoder (librsvg renders it, zbar's zbarimg decodes it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.guest_wifi import WifiSession
from tests.conftest import Mosquitto, Subscriber, free_port, wait_for

H = {"Authorization": "Bearer test-token"}
BASE = "o2o/v1/test-store/gw-test"
DOC = {"version": 3, "base_url": "https://go.example.com/store/", "allowed_hosts": ["shop.example.com"],
       "codes": [{"code": "spring-shoes", "target": "https://shop.example.com/spring?utm_source=qr", "zone": "shoes",
                  "campaign": "spring"},
                 {"code": "Rain_2", "target": "http://shop.example.com/rain", "zone": "entrance"}]}


def needs(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: scripts/test installs it (scripts/setup --system)")
    return path


async def scan(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    async with http.get(url, allow_redirects=False) as r:
        await r.read()
        return r


async def test_redirects_unknown_codes_refused_documents_and_scan_events(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    qr = ra.agent["qr"]
    scans = ra.agent.hub.subscribe("test", kinds={"qr.scanned", "qr.updated"})
    report = await qr.on_qr_set(json.dumps(DOC).encode())
    assert report["status"] == "applied" and report["version"] == 3
    assert (await scans.get()).data == {"version": 3, "codes": 2}
    async with aiohttp.ClientSession() as http:
        r = await scan(http, f"{ra.base_url}/q/spring-shoes")
        assert r.status == 302 and r.headers["Location"] == "https://shop.example.com/spring?utm_source=qr"
        assert r.headers["Cache-Control"] == "no-store"
        assert (await scans.get()).data == {"code": "spring-shoes", "zone": "shoes", "campaign": "spring"}
        r = await scan(http, f"{ra.base_url}/q/Rain_2")
        assert r.status == 302 and r.headers["Location"] == "http://shop.example.com/rain"
        assert (await scans.get()).data == {"code": "Rain_2", "zone": "entrance", "campaign": None}
        for path in ("/q/nope", "/q/..%2F..%2Fapi%2Fstatus", "/q/spring-shoes.svg", "/q/%00"):
            async with http.get(f"{ra.base_url}{path}", allow_redirects=False) as r:
                assert r.status == 404, path
                if path == "/q/nope":
                    assert r.content_type == "text/html" and "not in use" in await r.text()
        assert len(scans) == 0  # unknown codes record nothing

        # refused documents: nothing changes, the report names every problem by its key path
        bad = {**DOC, "version": 4, "codes": [
            {"code": "x", "target": "javascript:alert(document.cookie)"},
            {"code": "y", "target": "https://evil.example/phish"},
            {"code": "z", "target": "https://shop.example.com/ok"}]}
        report = await qr.on_qr_set(json.dumps(bad).encode())
        assert report["status"] == "rejected" and report["running_version"] == 3
        assert [(e["path"], e["message"]) for e in report["errors"]] == [
            ("codes[0].target", "only http and https URLs are allowed (got javascript:)"),
            ("codes[1].target", "host 'evil.example' is not in allowed_hosts")]
        bad = {**DOC, "version": 4, "codes": [{"code": "../etc", "target": "https://shop.example.com/"}]}
        report = await qr.on_qr_set(json.dumps(bad).encode())
        assert report["status"] == "rejected" and report["errors"][0]["path"] == "codes[0].code"
        report = await qr.on_qr_set(b'{"version": 5, "codes": [' + b'{"code": "a", "target": "x"},' * 200_000 + b"]}")
        assert report["status"] == "rejected" and "payload too large" in report["errors"][0]["message"]
        report = await qr.on_qr_set(json.dumps({**DOC, "version": 2}).encode())
        assert report["status"] == "rejected" and "stale" in report["errors"][0]["message"]
        assert await qr.on_qr_set(json.dumps(DOC).encode(), True) is None  # the retained copy of what runs
        r = await scan(http, f"{ra.base_url}/q/spring-shoes")
        assert r.status == 302  # still the running document

        async with http.get(f"{ra.base_url}/api/qr", headers=H) as r:
            listing = await r.json()
        assert listing["version"] == 3 and listing["base_url"] == "https://go.example.com/store"
        assert [(c["code"], c["scans"], c["url"]) for c in listing["codes"]] == [
            ("spring-shoes", 2, "https://go.example.com/store/q/spring-shoes"),
            ("Rain_2", 1, "https://go.example.com/store/q/Rain_2")]
        async with http.get(f"{ra.base_url}/api/qr") as r:
            assert r.status == 401
        status = (await ra.agent.status())["qr"]
        assert status == {"version": 3, "codes": 2, "scans": 3, "unknown": 4, "rate_limited": 0}


async def test_the_printed_svg_decodes_to_its_url(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    rsvg, zbarimg = needs("rsvg-convert"), needs("zbarimg")
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    assert (await ra.agent["qr"].on_qr_set(json.dumps(DOC).encode()))["status"] == "applied"
    async with aiohttp.ClientSession() as http:
        for code in ("spring-shoes", "Rain_2"):
            async with http.get(f"{ra.base_url}/api/qr/{code}.svg", headers=H) as r:
                assert r.status == 200 and r.content_type == "image/svg+xml"
                svg = await r.read()
            assert svg.startswith(b"<?xml") and b"<svg" in svg
            png = tmp_path / f"{code}.png"
            subprocess.run([rsvg, "--width", "600", "--background-color", "white", "-o", str(png)],
                           input=svg, check=True, timeout=30)
            decoded = subprocess.run([zbarimg, "--quiet", "--raw", str(png)], capture_output=True, check=True,
                                     timeout=30).stdout.decode().strip()
            assert decoded == f"https://go.example.com/store/q/{code}"
        async with http.get(f"{ra.base_url}/api/qr/nope.svg", headers=H) as r:
            assert r.status == 404 and "no QR code" in (await r.json())["error"]
        async with http.get(f"{ra.base_url}/api/qr/spring-shoes.svg") as r:
            assert r.status == 401


async def test_a_burst_from_one_phone_is_refused_and_disturbs_nothing(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    """10,000 scans in well under a minute from one address: 30 redirects, then 429s, counted; another phone,
    the API and the event stream are unaffected."""
    guest_port = free_port()
    ra = await start_agent(config_factory(mqtt={"enabled": False},
                                          wifi={"portal": {"fas_secure_level": 0, "ndsctl": "demo",
                                                           "listen": f"127.0.0.1:{guest_port}"}}))
    assert (await ra.agent["qr"].on_qr_set(json.dumps(DOC).encode()))["status"] == "applied"
    scans = ra.agent.hub.subscribe("test", kinds={"qr.scanned"}, maxsize=100_000)
    guest = f"http://127.0.0.1:{guest_port}"
    statuses: dict[int, int] = {}
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:

        async def worker(n: int) -> None:
            for _ in range(n):
                async with http.get(f"{guest}/q/spring-shoes", allow_redirects=False) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 429:
                        assert r.headers["Retry-After"] == "60"

        await asyncio.gather(*(worker(500) for _ in range(20)))
        elapsed = time.monotonic() - started
        assert elapsed < 60, elapsed  # all of it inside the limiter's window
        assert statuses == {302: 30, 429: 9970}
        other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))  # another phone on the store's network
        async with aiohttp.ClientSession(connector=other) as phone:
            r = await scan(phone, f"{guest}/q/spring-shoes")
            assert r.status == 302
            r = await scan(phone, f"{ra.base_url}/q/spring-shoes")  # printed codes may name the staff listener
            assert r.status == 302
            async with phone.head(f"{guest}/healthz") as r:  # probes ask with HEAD
                assert r.status == 200 and await r.read() == b""
        async with http.get(f"{ra.base_url}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{guest}/api/qr/spring-shoes.svg", headers=H) as r:
            assert r.status == 404  # the guest listener serves no staff route
    assert len(scans) == 32
    status = (await ra.agent.status())["qr"]
    assert status["scans"] == 32 and status["rate_limited"] == 9970
    assert (await ra.agent.status())["health"]["level"] != "red"


async def test_a_member_is_named_only_with_personalisation_consent(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(mqtt={"enabled": False},
                                          wifi={"portal": {"fas_secure_level": 0, "ndsctl": "demo"}}))
    assert (await ra.agent["qr"].on_qr_set(json.dumps(DOC).encode()))["status"] == "applied"
    scans = ra.agent.hub.subscribe("test", kinds={"qr.scanned"})
    sessions = ra.agent["wifi"].wifi.sessions
    now = time.time()
    # A guest without personalisation consent: the gateway knows a session, and still records nobody.
    sessions["127.0.0.1"] = WifiSession("127.0.0.1", "02:00:00:00:00:01", "hash", "c1", now, now + 600, None)
    async with aiohttp.ClientSession() as http:
        assert (await scan(http, f"{ra.base_url}/q/spring-shoes")).status == 302
        assert "member" not in (await scans.get()).data
        sessions["127.0.0.1"] = WifiSession("127.0.0.1", "02:00:00:00:00:01", "02:00:00:00:00:01", "c2", now,
                                            now + 600, "L1001")
        assert (await scan(http, f"{ra.base_url}/q/spring-shoes")).status == 302
        assert (await scans.get()).data == {"code": "spring-shoes", "zone": "shoes", "campaign": "spring",
                                            "member": "L1001"}
        sessions["127.0.0.1"].expires = now - 1  # an expired session names nobody
        assert (await scan(http, f"{ra.base_url}/q/spring-shoes")).status == 302
        assert "member" not in (await scans.get()).data


async def test_qr_set_over_mqtt_survives_a_restart(mosquitto: Mosquitto, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.publish as publish

    config = config_factory(mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.05,
                                  "reconnect_max_s": 0.2})
    reports = Subscriber(mosquitto.port, f"{BASE}/qr/reported")
    try:
        ra = await start_agent(config)
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        publish.single(f"{BASE}/qr/set", json.dumps(DOC), qos=1, retain=True, hostname="127.0.0.1",
                       port=mosquitto.port)
        await wait_for(lambda: reports.payloads(), 10)
        assert json.loads(reports.payloads()[-1])["status"] == "applied"
        bad = {**DOC, "version": 4, "allowed_hosts": ["shop.example.com"],
               "codes": [{"code": "a", "target": "https://elsewhere.example/"}]}
        publish.single(f"{BASE}/qr/set", json.dumps(bad), qos=1, hostname="127.0.0.1", port=mosquitto.port)
        await wait_for(lambda: len(reports.payloads()) >= 2, 10)
        last: dict[str, Any] = json.loads(reports.payloads()[-1])
        assert last["status"] == "rejected" and last["version"] == 4 and last["running_version"] == 3
        assert last["errors"] == [{"path": "codes[0].target", "message": "host 'elsewhere.example' is not in allowed_hosts"}]
        huge = b'{"version": 9, "codes": [' + b" " * (5 * 1024 * 1024) + b"]}"
        publish.single(f"{BASE}/qr/set", huge, qos=1, hostname="127.0.0.1", port=mosquitto.port)
        await wait_for(lambda: len(reports.payloads()) >= 3, 10)
        assert "payload too large" in json.loads(reports.payloads()[-1])["errors"][0]["message"]
        async with aiohttp.ClientSession() as http:
            assert (await scan(http, f"{ra.base_url}/q/Rain_2")).status == 302
        await ra.stop()

        ra = await start_agent(config)  # the retained qr/set comes again: same version, nothing to redo
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        await asyncio.sleep(0.5)
        assert len(reports.payloads()) == 3
        async with aiohttp.ClientSession() as http:
            r = await scan(http, f"{ra.base_url}/q/Rain_2")
            assert r.status == 302 and r.headers["Location"] == "http://shop.example.com/rain"
            async with http.get(f"{ra.base_url}/api/qr", headers=H) as r:
                counts = {c["code"]: c["scans"] for c in (await r.json())["codes"]}
        assert counts == {"spring-shoes": 0, "Rain_2": 2}  # the count from before the restart was kept
    finally:
        reports.close()
