"""After a busy hour staff clear the old gate alarms in one go: over HTTP (what is old, bad values refused) and
on the staff page in headless Chromium (the button counts exactly what it clears)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from agent.events import Event
from tests.agent.o2o.test_offers_browser import in_thread, until
from tests.agent.web.test_staff_http import config, login
from tests.agent.web.test_staff_page_browser import browser  # noqa: F401  (fixture)
from tests.conftest import wait_for


async def alarms_aged(ra: Any, *ages_s: float) -> list[str]:
    """Gate alarms that happened `ages_s` seconds ago, as the gate rule publishes them; their ids."""
    now = time.time()
    events = [Event("gate.alarm", "exit-1", {"gate": "exit-1", "zone": "checkout-1", "epc": f"0{i}", "gtin": None,
                                             "name": "Unknown item"}, ts=now - age) for i, age in enumerate(ages_s)]
    for e in events:
        ra.agent.hub.publish(e)
    await wait_for(lambda: len(ra.agent["alarms"].activity.alarms) == len(events), 5)
    return [e.id for e in events]


async def test_staff_clear_the_alarms_older_than_a_time(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    base = ra.base_url
    old_a, old_b, fresh = await alarms_aged(ra, 1800, 900, 30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: IP host
        status, me = await login(http, base, "staff", "staff-pass")
        assert status == 200
        csrf = {"X-CSRF-Token": me["csrf"]}
        for bad in ("abc", "-1", "nan", "inf", ""):
            async with http.post(f"{base}/api/actions/alarms/ack", params={"older_than_s": bad}, headers=csrf) as r:
                assert r.status == 400, bad
                assert (await r.json())["error"] == "older_than_s must be a number of seconds, 0 or more"
        assert ra.agent["alarms"].activity.unacknowledged == 3  # nothing cleared by a refused request
        async with http.post(f"{base}/api/actions/alarms/ack", params={"older_than_s": "600"}, headers=csrf) as r:
            assert r.status == 200 and await r.json() == {"acknowledged": 2}
        async with http.get(f"{base}/api/alarms") as r:
            by_id = {a["id"]: a["acknowledged"] for a in (await r.json())["alarms"]}
        assert by_id[old_a]["by"] == by_id[old_b]["by"] == "staff" and by_id[fresh] is None
        # Each cleared alarm is an event (the cloud sees who checked what); the fresh one is still to check.
        await wait_for(lambda: sum(e["kind"] == "gate.alarm.acknowledged" for e in ra.agent["alarms"].activity.recent)
                       == 2, 5)
        async with http.post(f"{base}/api/actions/alarms/ack", params={"older_than_s": "600"}, headers=csrf) as r:
            assert await r.json() == {"acknowledged": 0}  # again: nothing left that old
        async with aiohttp.ClientSession() as anonymous, anonymous.post(f"{base}/api/actions/alarms/ack") as r:
            assert r.status == 401
    assert ra.agent["alarms"].activity.unacknowledged == 1


async def test_the_page_button_clears_exactly_the_old_alarms(browser: WebDriver, config_factory,  # noqa: F811
                                                             start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    await alarms_aged(ra, 3600, 1200, 700, 60)
    await in_thread(browser.get, f"{ra.base_url}/login")
    await in_thread(lambda: browser.find_element(By.ID, "username").send_keys("staff"))
    await in_thread(lambda: browser.find_element(By.ID, "password").send_keys("staff-pass"))
    await in_thread(lambda: browser.find_element(By.ID, "submit").click())
    label = await until(browser, lambda d: d.execute_script(
        "const b = document.getElementById('ack-old'); return b && b.textContent;"))
    assert label == "Clear the 3 alarms older than 10 minutes"  # not the fourth, a minute old
    await in_thread(lambda: browser.find_element(By.ID, "ack-old").click())
    await until(browser, lambda d: d.find_element(By.ID, "notice").text == "Clear old alarms: done.")
    assert ra.agent["alarms"].activity.unacknowledged == 1
    # The fresh alarm keeps its own button; with nothing old left, the clear-old button is gone.
    await until(browser, lambda d: d.execute_script(
        "return !document.getElementById('ack-old')"
        " && document.querySelectorAll('#alarms button[data-alarm]').length === 1"))
    assert "exit-gate alarm" in await in_thread(lambda: browser.find_element(By.ID, "health").text)
