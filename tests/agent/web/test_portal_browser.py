"""The captive portal in headless Chromium on a phone-sized window, in French and in English; a stand-in
for openNDS's ndsctl records what the gateway was told."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.agent.web.test_staff_page_browser import ARTIFACTS, browser, until  # noqa: F401  (fixture)
from tests.conftest import free_port, write_config

VECTORS = json.loads((Path(__file__).parents[2] / "drivers" / "wifi" / "opennds_vectors.json").read_text())


@pytest.mark.parametrize(("lang", "welcome", "done"), [
    ("fr", "Bienvenue chez", "Vous êtes connecté"), ("en", "Welcome to", "You are connected")])
def test_portal_on_a_phone(tmp_path: Path, browser: WebDriver, lang: str, welcome: str, done: str) -> None:  # noqa: F811
    log = tmp_path / "ndsctl.log"
    ndsctl = tmp_path / "ndsctl"
    ndsctl.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    ndsctl.chmod(0o755)
    port = free_port()
    config = write_config(tmp_path, store={"id": "s", "gateway": "g", "name": "Boutique Odéon"},
                          http={"listen": f"127.0.0.1:{port}"}, mqtt={"enabled": False},
                          wifi={"portal": {"fas_secure_level": 1, "ndsctl": str(ndsctl), "session_minutes": 90}})
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        browser.set_window_size(390, 844)
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": lang}})
        browser.execute_cdp_cmd("Network.enable", {})
        url = f"http://127.0.0.1:{port}/portal/?fas={VECTORS['level1']['fas']}"
        deadline = time.monotonic() + 20
        while True:
            try:
                browser.get(url)
                if welcome in browser.page_source:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("portal did not come up")
            time.sleep(0.2)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
        boxes = browser.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
        assert [b.is_selected() for b in boxes] == [False, False, False]  # nothing pre-ticked
        boxes[0].click()  # Wi-Fi
        boxes[1].click()  # marketing
        browser.find_element(By.NAME, "loyalty").send_keys("123456789")
        browser.find_element(By.ID, "connect").click()
        until(browser, lambda d: done in d.page_source)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"portal-{lang}.png"))
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        args = log.read_text().split()
        assert args[:3] == ["auth", "aa:bb:cc:dd:ee:ff", "90"]
    finally:
        proc.terminate()
        proc.wait(10)
