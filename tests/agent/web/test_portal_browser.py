"""The captive portal in headless Chromium on a phone-sized window, in French and in English; a stand-in
for openNDS's ndsctl records what the gateway was told."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.agent.web.test_portal_http import FASKEY, Nds
from tests.agent.web.test_staff_page_browser import ARTIFACTS, browser, until  # noqa: F401  (fixture)
from tests.conftest import free_port, write_config


@pytest.mark.parametrize(("lang", "welcome", "done"), [
    ("fr", "Bienvenue chez", "Vous êtes connecté"), ("en", "Welcome to", "You are connected")])
def test_portal_on_a_phone(tmp_path: Path, browser: WebDriver, lang: str, welcome: str, done: str) -> None:  # noqa: F811
    nds = Nds(tmp_path)
    client = nds.add()
    port, guest_port = free_port(), free_port()
    config = write_config(tmp_path, store={"id": "s", "gateway": "g", "name": "Boutique Odéon"},
                          http={"listen": f"127.0.0.1:{port}"}, mqtt={"enabled": False},
                          wifi={"portal": {"fas_secure_level": 1, "ndsctl": str(nds.path), "session_minutes": 90,
                                           "faskey": FASKEY, "listen": f"127.0.0.1:{guest_port}"}})
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        browser.set_window_size(390, 844)
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": lang}})
        browser.execute_cdp_cmd("Network.enable", {})
        url = f"http://127.0.0.1:{guest_port}/portal/?{nds.query(1, client)}"  # the guest-facing listener
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
        assert "Your session ends in 90 minutes" in browser.page_source or "se termine dans 90 minutes" in browser.page_source
        (auth,) = nds.calls("auth")
        assert auth[2] == "90" and nds.client()["state"] == "Authenticated"  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(10)
