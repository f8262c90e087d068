"""The staff page's offers card in headless Chromium shows the day's numbers; the portal shows the member's
current offer after connecting."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from agent.events import Event
from agent.web.auth import hash_password
from tests.agent.web.test_portal_http import FASKEY, Nds, form_fields, open_portal
from tests.agent.web.test_staff_page_browser import ARTIFACTS, browser  # noqa: F401  (fixture)
from tests.conftest import wait_for


async def in_thread(fn: Any, *args: Any) -> Any:
    """Selenium blocks: run it off the loop that serves the page."""
    return await asyncio.to_thread(fn, *args)


async def until(driver: WebDriver, condition: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await in_thread(condition, driver)
        except WebDriverException:  # not on the page yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the page did not show it in time")
        await asyncio.sleep(0.2)


async def test_the_offers_card_shows_the_day(browser: WebDriver, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ra = await start_agent(config_factory(
        http={"listen": "127.0.0.1:0", "users": [{"name": "boss", "role": "admin",
                                                  "password_hash": hash_password("boss-pass")}]},
        mqtt={"enabled": False}))
    now = time.time()
    for i, kind in enumerate(["offer.triggered"] * 3 + ["offer.held_out", "offer.redeemed"]):
        data = {"campaign": "shoes-10", "member": f"L{i}", "amount": "59.90"}
        ra.agent.hub.publish(Event(kind, "gw", data, ts=now - 60 + i))
    await wait_for(lambda: ra.agent["rules"].events >= 5, 5)
    await in_thread(browser.get, f"{ra.base_url}/login")
    await in_thread(lambda: browser.find_element(By.ID, "username").send_keys("boss"))
    await in_thread(lambda: browser.find_element(By.ID, "password").send_keys("boss-pass"))
    await in_thread(lambda: browser.find_element(By.ID, "submit").click())
    # Read the row in one script: the card re-renders on every status refresh, so a found element can go stale.
    cells = await until(browser, lambda d: d.execute_script(
        "const r = document.querySelector('tr[data-campaign=\"shoes-10\"]');"
        "return r && [...r.querySelectorAll('td')].map(c => c.innerText.trim());"))
    assert cells[:4] == ["shoes-10", "3", "1", "1"] and cells[-1] == "59.90"
    bars = await in_thread(lambda: browser.find_elements(By.CSS_SELECTOR, "#offers-chart rect"))
    assert len(bars) == 28  # two weeks, shown and redeemed
    scale, days, width = await in_thread(browser.execute_script, """
        const s = document.querySelector('#offers-chart .scale');
        return [s.textContent, [...document.querySelectorAll('#offers-chart .bars-days span')].map(e => e.textContent),
                s.getBoundingClientRect().width];""")
    assert scale == "3 a day"  # the tallest bar: three offers shown today
    today = time.strftime("%m-%d", time.localtime(now))
    assert len(days) == 2 and days[1] == today  # the first and last day under the bars
    assert width < 100  # text in the card's font, not stretched with the bars (stretched with them it measured 113 px here)
    ARTIFACTS.mkdir(exist_ok=True)
    await in_thread(browser.save_screenshot, str(ARTIFACTS / "staff-page-offers.png"))


async def test_the_portal_shows_the_members_offer(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    nds = Nds(tmp_path)
    ra = await start_agent(config_factory(
        wifi={"portal": {"fas_secure_level": 1, "ndsctl": str(nds.path), "faskey": FASKEY}}, mqtt={"enabled": False}))
    doc = {"version": 1, "campaigns": [{"id": "welcome", "trigger": {"on": "wifi.session.start"},
                                        "offer": {"title": "Welcome back", "text": "A coffee on us", "code": "CAFE"}}]}
    import json

    assert (await ra.agent["offers"].on_campaigns(json.dumps(doc).encode()))["status"] == "applied"
    query = nds.query(1, nds.add())
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, ra.base_url, query, "en")
        async with http.post(f"{ra.base_url}/portal/", data={**fields, "wifi": "1", "marketing": "1",
                                                               "personalisation": "1", "loyalty": "10010001"}) as r:
            assert r.status == 200 and 'id="success"' in await r.text()
        await wait_for(lambda: ra.agent["offers"].counts["triggered"] == 1, 5)
        page, _ = await open_portal(http, ra.base_url, query, "en")  # back on the portal while online
    assert "Your offer today: Welcome back" in page and "CAFE" in page
    assert "p" not in form_fields(page) and re.search(r'id="time-left"', page)  # no consent form: online
