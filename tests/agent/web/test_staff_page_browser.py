"""The staff page in headless Chromium (Debian's chromium + chromedriver), against the daemon as a process.

Log in, watch a reader go offline when its pty closes and come back, watch the backlog grow while the
broker is stopped, trigger an action. A screenshot is saved under test-artifacts/.
"""

from __future__ import annotations

import os
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
from selenium.webdriver.support.ui import WebDriverWait

from agent.web.auth import hash_password
from drivers.rfid.simulator import ManualScenario, PtySimulator, demo_epc
from tests.conftest import Mosquitto, free_port, write_config

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        pytest.fail("chromium and chromedriver are not installed: scripts/test installs them (scripts/setup --system)")
    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def until(driver: WebDriver, condition, timeout: float = 20):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))


def reader_state(driver: WebDriver, reader: str) -> str | None:
    try:
        return driver.find_element(By.CSS_SELECTOR, f'tr[data-reader="{reader}"]').get_attribute("data-state")
    except WebDriverException:
        return None


def test_staff_page_live(tmp_path: Path, mosquitto: Mosquitto, browser: WebDriver) -> None:
    scenario = ManualScenario()
    scenario.put(demo_epc(0, 1))
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "reader", period_s=0.05)
    port = sim.start()
    http_port = free_port()
    config = write_config(
        tmp_path, store={"id": "browser-store", "gateway": "gw-1"},
        http={"listen": f"127.0.0.1:{http_port}", "api_token": "t",
              "users": [{"name": "boss", "role": "admin", "password_hash": hash_password("boss-pass")}]},
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        rfid={"gone_after_s": 1.0, "keep_raw_reads": True,
              "readers": [{"id": "checkout-1", "port": port, "protocol": "mercury", "baudrate": 115200}]})
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                browser.get(f"{base}/login")
                break
            except WebDriverException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        browser.find_element(By.ID, "username").send_keys("boss")
        browser.find_element(By.ID, "password").send_keys("wrong")
        browser.find_element(By.ID, "submit").click()
        until(browser, lambda d: "wrong user name" in d.find_element(By.ID, "error").text)
        browser.find_element(By.ID, "password").clear()
        browser.find_element(By.ID, "password").send_keys("boss-pass")
        browser.find_element(By.ID, "submit").click()
        until(browser, lambda d: reader_state(d, "checkout-1") == "online")
        until(browser, lambda d: "green" in d.find_element(By.ID, "health").get_attribute("class"))
        until(browser, lambda d: "tag.seen" in d.find_element(By.ID, "feed").text)  # the live feed

        sim.unplug()  # the reader's USB cable is pulled
        until(browser, lambda d: reader_state(d, "checkout-1") == "offline")
        health = browser.find_element(By.ID, "health")
        # the only reader is gone: red, and the reasons say which one and what to do
        assert "red" in health.get_attribute("class") and "Reader checkout-1 unplugged" in health.text
        sim.plug()
        until(browser, lambda d: reader_state(d, "checkout-1") == "online", 30)

        mosquitto.stop()  # the cloud link goes down while the reader keeps reading
        until(browser, lambda d: "Cloud link down" in d.find_element(By.ID, "health").text)
        first = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-backlog"))
        until(browser, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-backlog")) > first + 20)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "staff-page-cloud-down.png"))
        # what it means for staff, the error itself for support (in the tooltip)
        state = browser.find_element(By.ID, "cloud-state")
        assert state.text == "down: the cloud server cannot be reached", state.text
        assert "refused" in (state.get_attribute("title") or "").lower()
        browser.find_element(By.ID, "sync").click()  # "done" would tell staff the backlog went out
        until(browser, lambda d: d.find_element(By.ID, "notice").text
              == "The cloud link is down: the backlog is kept and goes out by itself once it is back.")

        browser.find_element(By.CSS_SELECTOR, 'button[data-reader="checkout-1"][data-action="pause"]').click()
        until(browser, lambda d: reader_state(d, "checkout-1") == "paused")
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-last-action") == "pause:200"
        mosquitto.start()
        browser.find_element(By.ID, "sync").click()
        until(browser, lambda d: d.find_element(By.ID, "cloud-state").text == "connected", 30)
        until(browser, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-backlog")) < first + 20, 30)
        browser.set_window_size(360, 900)
        browser.save_screenshot(str(ARTIFACTS / "staff-page-phone.png"))
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 360, f"the page scrolls sideways on a phone ({width}px)"
    finally:
        proc.terminate()
        proc.wait(10)
        sim.stop()
    assert os.path.getsize(ARTIFACTS / "staff-page-cloud-down.png") > 10_000
