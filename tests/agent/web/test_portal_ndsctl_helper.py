"""The portal through the real daemon with `[wifi.portal] ndsctl = "unix:…"`: every ndsctl call goes over a unix
socket to the root helper (drivers/wifi/ndsctl_helper.py), started once per connection as systemd's Accept=yes
starts o2o-edge-ndsctl@.service, in front of the faithful fake ndsctl."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from drivers.wifi.fas import rhid, token_hid
from tests.agent.web.test_portal_http import (
    FASKEY,
    MAC,
    Nds,
    open_portal,
    portal_config,
    visit_status,
)
from tests.conftest import wait_for
from tests.drivers.wifi import fake_ndsctl
from tests.drivers.wifi.helper_socket import HELPER, HelperSocket


@pytest.fixture
def helper(nds: Nds) -> Iterator[HelperSocket]:
    server = HelperSocket([*HELPER, "--ndsctl", str(nds.path)])
    yield server
    server.close()


@pytest.fixture
def nds(tmp_path: Path) -> Nds:
    return Nds(tmp_path)


async def test_a_guest_gets_online_and_out_through_the_helper(nds: Nds, helper: HelperSocket, config_factory,  # type: ignore[no-untyped-def]
                                                               start_agent) -> None:
    ra = await start_agent(portal_config(config_factory, nds, ndsctl=helper.url))
    base = ra.base_url
    client = nds.add()
    query = nds.query(1, client)
    async with aiohttp.ClientSession() as http:
        _, fields = await open_portal(http, base, query, "en")
        async with http.post(f"{base}/portal/", data={**fields, "wifi": "1", "personalisation": "1"}) as r:
            assert r.status == 200
            page = await r.text()
        assert 'id="success"' in page
        key, token = rhid(token_hid(client["token"]), FASKEY), client["token"]
        # found by rhid, checked again and authenticated by the token openNDS reported for it
        assert nds.calls() == [["json", key], ["json", token], ["auth", token, "120", "0", "0", "0", "0",
                                                                 nds.calls("auth")[0][7]]]
        assert nds.client()["state"] == "Authenticated"  # type: ignore[index]
        await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.session.start"), 5)
        csrf = re.search(r'action="/portal/logout[^"]*"><input type="hidden" name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        async with http.post(f"{base}/portal/logout", data={"csrf": csrf.group(1)}) as r:
            assert r.status == 200 and "disconnected" in await r.text()
    assert nds.calls("deauth") == [["deauth", MAC]] and nds.client() is None
    assert len(helper.procs) == 4  # one root process a request
    journal = helper.journal()
    assert "json <rhid>: exit 0" in journal and "json <token>: exit 0" in journal
    assert "auth <token> 120 0 0 0 0 <custom, " in journal
    assert "deauth <MAC>: exit 0" in journal
    assert MAC not in journal and key not in journal and client["token"] not in journal  # no secrets logged


async def test_openNDS_down_behind_the_helper(nds: Nds, helper: HelperSocket, config_factory,  # type: ignore[no-untyped-def]
                                              start_agent) -> None:
    ra = await start_agent(portal_config(config_factory, nds, ndsctl=helper.url))
    client = nds.add()
    fake_ndsctl.update_state(nds.state, running=False)
    async with aiohttp.ClientSession() as http:
        status, page = await visit_status(http, ra.base_url, nds.query(1, client))
    assert status == 503 and "not answering" in page
    assert ra.agent["wifi"].wifi.refused["ndsctl"] == 1 and not nds.calls("auth")


async def test_no_helper_socket(nds: Nds, config_factory, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(portal_config(config_factory, nds, ndsctl=f"unix:{tmp_path}/nosuch.sock"))
    async with aiohttp.ClientSession() as http:
        status, page = await visit_status(http, ra.base_url, nds.query(1, nds.add()))
    assert status == 503 and "not answering" in page
    assert ra.agent["wifi"].wifi.refused["ndsctl"] == 1 and nds.calls() == []
