"""The self-checkout kiosk page in headless Chromium, against the daemon as a process: the shopper's language
(French and English by Accept-Language), the station's name, the basket live, and "not set up" on a wrong
token or an unknown station instead of reconnecting for ever."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from drivers.rfid.simulator import ManualScenario, PtySimulator, demo_epc
from tests.agent.web.test_staff_page_browser import ARTIFACTS, CHROMIUM_FLAGS, until
from tests.conftest import free_port, write_config

TOKEN = "kiosk-token-1"


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], WebDriver]]:
    """Headless Chromium whose Accept-Language is the one given."""
    drivers: list[WebDriver] = []

    def start(accept_language: str) -> WebDriver:
        options = webdriver.ChromeOptions()
        profile = tmp_path / f"chromium-{len(drivers)}"
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1024,768",
                     f"--lang={accept_language.split(',')[0]}"]:
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                  options=options)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for d in drivers:
        d.quit()


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[str, ManualScenario]]:
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "till", period_s=0.05)
    port = sim.start()
    http_port = free_port()
    config = write_config(
        tmp_path, store={"id": "k-store", "gateway": "gw-1"},
        http={"listen": f"127.0.0.1:{http_port}", "api_token": "t"}, mqtt={"enabled": False},
        rfid={"readers": [{"id": "till", "port": port, "protocol": "mercury", "baudrate": 115200,
                           "zones": {1: "till"}}]},
        checkout={"stations": [{"id": "sco-1", "name": "Till 1, by the door", "zones": ["till"], "token": TOKEN,
                                "settle_s": 0.1}]})
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config),
                             "--demo"], stderr=subprocess.DEVNULL)  # --demo: the demo catalog prices the items
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
            if "ERR_CONNECTION_REFUSED" not in driver.page_source:
                return
        except WebDriverException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not load")
        time.sleep(0.2)


def by_id(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


@pytest.mark.parametrize(("accept_language", "expected"), [
    ("en-GB,en", {"title": "Self-checkout", "empty": "Put your basket on the table.", "live": "live",
                  "total": "Total €19.90", "not_set_up": "This kiosk is not set up. Please ask a member of staff."}),
    ("fr-FR,fr,en", {"title": "Caisse libre-service", "empty": "Posez votre panier sur la table.", "live": "en direct",
                     "total": "Total 19,90 €",
                     "not_set_up": "Cette borne n'est pas configurée. Merci de demander à un membre du personnel."}),
])
def test_the_kiosk_page(kiosk, chromium, accept_language: str, expected: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    base, scenario = kiosk
    driver = chromium(accept_language)
    open_page(driver, f"{base}/kiosk/sco-1?token={TOKEN}")
    lang = accept_language[:2]
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
    assert by_id(driver, "station") == "Till 1, by the door"
    assert driver.find_element(By.TAG_NAME, "h1").text == f"{expected['title']} · Till 1, by the door"
    until(driver, lambda d: by_id(d, "state") == expected["live"])
    assert by_id(driver, "empty") == expected["empty"]
    scenario.put(demo_epc(0, 1))
    until(driver, lambda d: "Trail running shoe" in by_id(d, "lines"))
    assert by_id(driver, "total").replace("\u202f", " ").replace("\xa0", " ") == expected["total"]
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"kiosk-{lang}.png"))

    # A wrong token, an unknown station: the screen says so at once, and keeps saying it.
    for url in (f"{base}/kiosk/sco-1?token=wrong", f"{base}/kiosk/sco-1", f"{base}/kiosk/sco-9?token={TOKEN}"):
        open_page(driver, url)
        until(driver, lambda d: by_id(d, "not-set-up") == expected["not_set_up"])
        time.sleep(1.5)
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "not-set-up"
        assert by_id(driver, "state") not in ("reconnecting…", "reconnexion…")
        assert not driver.find_element(By.ID, "basket").is_displayed()
