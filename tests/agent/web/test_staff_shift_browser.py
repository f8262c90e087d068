"""A shift on the staff page, in headless Chromium against the daemon as a process: the login form without
JavaScript, the store's name, a staff login clearing a gate alarm, the basket on the checkout card, the
charts' units, admin actions with visible feedback, and readers that keep their rows and their pause."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from agent.web.auth import hash_password
from drivers.rfid.simulator import ManualScenario, PtySimulator, demo_epc
from tests.agent.web.test_staff_page_browser import ARTIFACTS, CHROMIUM_FLAGS, browser, until  # noqa: F401
from tests.conftest import free_port, write_config

STORE_NAME = "Odéon test store"


@pytest.fixture
def no_js_browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-nojs'}", "--window-size=800,800"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, ManualScenario]]:
    """The daemon with a gate and a station behind one reader on a pty, a second reader, two logins."""
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "door", period_s=0.05)
    port = sim.start()
    http_port = free_port()
    config = write_config(
        tmp_path, store={"id": "shift-store", "gateway": "gw-1", "name": STORE_NAME},
        http={"listen": f"127.0.0.1:{http_port}", "api_token": "t",
              "users": [{"name": "boss", "role": "admin", "password_hash": hash_password("boss-pass")},
                        {"name": "shift", "role": "staff", "password_hash": hash_password("shift-pass")}]},
        mqtt={"enabled": False},
        rfid={"gone_after_s": 1.0, "readers": [
            {"id": "door", "port": port, "protocol": "mercury", "baudrate": 115200, "zones": {1: "till", 2: "exit"}},
            {"id": "badge", "port": "loop://", "protocol": "em4100", "baudrate": 9600, "silence_timeout_s": 3600}]},
        checkout={"stations": [{"id": "sco-1", "zones": ["till"], "token": "kiosk-token"}],
                  "gates": [{"id": "exit-1", "zones": ["exit"], "rearm_s": 0.5}]})
    # --demo: the demo catalog prices the simulated items (no reader here has a [simulator]).
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config),
                             "--demo"], stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{http_port}", scenario
    finally:
        proc.terminate()
        proc.wait(10)
        sim.stop()


def open_page(driver: WebDriver, url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            driver.get(url)
            return
        except WebDriverException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def log_in(driver: WebDriver, base: str, user: str, password: str) -> None:
    open_page(driver, f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()


def text(driver: WebDriver, element_id: str) -> str:
    try:
        return driver.find_element(By.ID, element_id).text
    except WebDriverException:
        return ""


def rows(driver: WebDriver) -> list[tuple[str, str]]:
    """Read in one script: the card re-renders on every status refresh, and rows found one call earlier can be
    stale by the next (an empty list then failed an order check)."""
    try:
        found = driver.execute_script(
            "return [...document.querySelectorAll('#readers tr[data-reader]')]"
            ".map(r => [r.dataset.reader, r.dataset.state]);")
    except WebDriverException:
        return []
    return [(str(r), str(s)) for r, s in found or []]


def test_the_login_form_works_without_javascript(shop, no_js_browser: WebDriver) -> None:  # type: ignore[no-untyped-def]
    base, _ = shop
    driver = no_js_browser
    log_in(driver, base, "boss", "wrong")
    # the click returns before the answer's page is loaded: wait for it
    until(driver, lambda d: text(d, "error") == "Wrong user name or password.")
    assert driver.current_url == f"{base}/login" and "wrong" not in driver.current_url
    driver.find_element(By.ID, "password").send_keys("boss-pass")
    driver.find_element(By.ID, "username").send_keys("")  # the page came back with the form, user name kept empty
    driver.find_element(By.ID, "username").send_keys("boss")
    driver.find_element(By.ID, "submit").click()
    until(driver, lambda d: d.current_url == f"{base}/")
    assert "password" not in driver.current_url and "boss-pass" not in driver.current_url
    assert any(c["name"] == "o2o_session" and c["httpOnly"] for c in driver.get_cookies())


def test_a_shift_on_the_staff_page(shop, browser: WebDriver) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    base, scenario = shop
    scenario.put(demo_epc(0, 1), antenna=1)  # a shoe on the self-checkout table
    scenario.put(demo_epc(1, 7), antenna=2)  # an unpaid T-shirt walks through the exit gate

    # Staff (read-only) on the shift: the store's name, the basket, the charts, and the alarm they may clear.
    log_in(browser, base, "shift", "shift-pass")
    until(browser, lambda d: text(d, "store") == STORE_NAME)
    assert browser.title.startswith(STORE_NAME)
    until(browser, lambda d: "1 × Trail running shoe" in text(d, "stations"))  # noqa: RUF001
    station = browser.find_element(By.CSS_SELECTOR, 'li[data-station="sco-1"]').text
    assert "19.90 EUR" in station and "Total 19.90 EUR" in station
    history = browser.find_element(By.ID, "card-history").text
    assert "Events per second" in history and "Events waiting to be sent" in history
    assert "60 min ago → now" in history
    until(browser, lambda d: text(d, "rate-max").endswith("events/s") and text(d, "backlog-max").endswith("events"))
    until(browser, lambda d: "exit-gate alarm(s) to check" in text(d, "health"))
    button = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#alarms button[data-alarm]"))
    assert button.text == "Checked: clear this alarm"
    # the same T-shirt passes again before anyone checked: one row for the tag, not one per pass
    scenario.remove(demo_epc(1, 7))
    time.sleep(2.0)  # gone (gone_after_s 1.0), and past the gate's rearm_s
    scenario.put(demo_epc(1, 7), antenna=2)
    until(browser, lambda d: " — 2 times since " in text(d, "alarms"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#alarms li")) == 1
    button = browser.find_element(By.CSS_SELECTOR, "#alarms button[data-alarm]")
    assert button.text == "Checked: clear these 2 alarms"
    assert re.search(r"\b([01]\d|2[0-3]):[0-5]\d:[0-5]\d exit-1: ", text(browser, "alarms"))  # 24-hour
    button.click()
    until(browser, lambda d: text(d, "notice") == "Clear the alarms: done.")
    until(browser, lambda d: "checked by shift" in text(d, "alarms"))
    until(browser, lambda d: "exit-gate alarm" not in text(d, "health"))
    scenario.remove(demo_epc(1, 7))
    browser.find_element(By.ID, "logout").click()
    until(browser, lambda d: d.current_url.endswith("/login"))

    # The admin: actions say what happened, rows stay in the config's order, a paused reader stays paused.
    log_in(browser, base, "boss", "boss-pass")
    until(browser, lambda d: rows(d) == [("door", "online"), ("badge", "online")])
    browser.find_element(By.CSS_SELECTOR, 'button[data-reader="door"][data-action="pause"]').click()
    until(browser, lambda d: text(d, "notice") == "Pause door: done.")
    until(browser, lambda d: rows(d) == [("door", "paused"), ("badge", "online")])
    until(browser, lambda d: "Reader door paused by boss since" in text(d, "health"))
    restart = browser.find_element(By.CSS_SELECTOR, 'button[data-reader="door"][data-action="restart"]')
    assert restart.text == "Restart (stays paused)"
    restart.click()
    until(browser, lambda d: text(d, "notice") == "Restart (stays paused) door: done.")
    time.sleep(2.5)  # a reader that came back unpaused would be online by now
    assert rows(browser) == [("door", "paused"), ("badge", "online")]
    browser.find_element(By.CSS_SELECTOR, 'button[data-reader="badge"][data-action="restart"]').click()
    until(browser, lambda d: text(d, "notice") == "Restart badge: done.")
    time.sleep(1)
    until(browser, lambda d: [r for r, _ in rows(d)] == ["door", "badge"])  # the restarted reader keeps its row
    # A failure says why, in the same place.
    browser.execute_script("O2O.act('/api/actions/readers/nope/pause', {label: 'Pause nope', tag: 'pause'})")
    until(browser, lambda d: text(d, "notice") == "Pause nope failed: no reader 'nope'")
    assert "failed" in browser.find_element(By.ID, "notice").get_attribute("class")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "staff-page-shift.png"))
