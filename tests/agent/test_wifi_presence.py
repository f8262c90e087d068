"""Wi-Fi footfall from a probe-request capture: per-zone counts, and no raw MAC anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

from agent.config import PresenceConfig
from agent.hub import Hub
from agent.wifi_presence import WifiPresence
from drivers.wifi.probes import encode_probe
from drivers.wifi.sources import write_radiotap_pcap
from tests.conftest import wait_for

ZONES = [{"id": "entrance", "rssi_min": -60}, {"id": "floor", "rssi_min": -80}]
# 3 phones near the entrance (2 randomised), 4 further in, 1 too far to count; each probes several times.
PHONES = [("da:00:00:00:00:01", -50), ("de:00:00:00:00:02", -55), ("00:11:22:00:00:03", -58),
          ("3a:00:00:00:00:04", -65), ("00:11:22:00:00:05", -70), ("00:11:22:00:00:06", -75),
          ("7e:00:00:00:00:07", -79), ("00:11:22:00:00:08", -90)]


def capture(start: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    records = []
    for rep in range(5):
        for i, (mac, rssi) in enumerate(PHONES):
            records.append((start + rep * 10 + i * 0.1, encode_probe(mac, rssi)))
    records.append((start + 61, encode_probe("00:11:22:00:00:09", -50)))  # next window
    return records


def test_counts_per_zone() -> None:
    hub = Hub()
    sub = hub.subscribe("t")
    presence = WifiPresence(PresenceConfig.model_validate({"source": "replay:x", "zones": ZONES, "window_s": 60}),
                            hub, "gw")
    for ts, frame in capture():
        presence.on_frame(ts, frame)
    (event,) = sub.get_nowait_batch(10)
    assert event.kind == "wifi.presence"
    assert event.data["zones"] == {"entrance": {"devices": 3, "randomized": 2},
                                   "floor": {"devices": 4, "randomized": 2}}
    assert event.data["devices"] == 7
    assert "00:11:22" not in json.dumps(event.data)


async def test_replay_end_to_end_no_raw_mac_in_the_database(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    pcap = tmp_path / "probes.pcap"
    buf = io.BytesIO()
    write_radiotap_pcap(buf, capture())
    pcap.write_bytes(buf.getvalue())
    ra = await start_agent(config_factory(wifi={"presence": {"source": f"replay:{pcap}?fast", "zones": ZONES,
                                                             "window_s": 60}}, mqtt={"enabled": False}))
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("wifi.presence"), 5)
    assert (await ra.agent.status())["wifi_presence"]["probes"] == 41
    await ra.stop()
    conn = sqlite3.connect(ra.agent.config.storage.path)
    bodies = "\n".join(b.decode() for (b,) in conn.execute("SELECT body FROM outbox"))
    dump = "\n".join(conn.iterdump())
    conn.close()
    for mac, _ in PHONES:
        for text in (bodies, dump):
            assert mac not in text.lower() and mac.replace(":", "") not in text.lower()
            assert mac.encode().hex() not in text.lower()  # not even inside a BLOB
    assert '"entrance":{"devices":3' in bodies


async def test_a_window_closes_on_the_clock_and_the_current_counts_show(tmp_path: Path, config_factory,  # type: ignore[no-untyped-def]
                                                                        start_agent) -> None:
    """A replay shorter than one window: its counts are in /api/status at once, and the window closes on time
    although no frame arrives after it."""
    import time

    pcap = tmp_path / "probes.pcap"
    buf = io.BytesIO()
    write_radiotap_pcap(buf, [(time.time() + i * 0.01, encode_probe(mac, rssi)) for i, (mac, rssi) in
                              enumerate(PHONES)])
    pcap.write_bytes(buf.getvalue())
    ra = await start_agent(config_factory(wifi={"presence": {"source": f"replay:{pcap}", "zones": ZONES,
                                                             "window_s": 2}}, mqtt={"enabled": False}))
    await wait_for(lambda: ra.agent["wifi_presence"].presence.probes == len(PHONES), 5)
    now = (await ra.agent.status())["wifi_presence"]
    assert now["devices_now"] == 7 and now["zones_now"]["entrance"] == {"devices": 3, "randomized": 2}
    sub = ra.agent.hub.subscribe("t", kinds={"wifi.presence"})
    event = await asyncio.wait_for(sub.get(), 5)  # the quiet clock closed the window
    assert event.data["devices"] == 7
    status = await ra.agent.status()
    assert status["wifi_presence"]["devices_now"] == 0 and status["wifi_presence"]["last_window"]["devices"] == 7
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{ra.base_url}/metrics",
                                                         headers={"Authorization": "Bearer test-token"}) as r:
        assert "o2o_wifi_devices_now" in await r.text()
