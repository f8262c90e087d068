"""openNDS in-process, for `o2o-edge run --demo` only: the client list and the answers `ndsctl` gives.

A demo has no openNDS. This keeps what the portal needs from it, with the
same rules as openNDS (src/client_list.c, src/ndsctl_thread.c, src/auth.c): a
device that shows up is Preauthenticated with a fresh 8-hex token; auth moves
it to Authenticated; deauth deletes it (it comes back with a new token).
`arrive()` plays a phone joining the Wi-Fi and returns the level 0 FAS query
openNDS would redirect it to (http_microhttpd.c 1318-1320, 1455-1461).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from drivers.wifi.fas import rhid, token_hid
from drivers.wifi.ndsctl import NdsClient

__all__ = ["DemoOpenNds"]

AUTHDIR = "opennds_auth"


class DemoOpenNds:
    def __init__(self, gateway_address: str, gatewayname: str, faskey: str = "") -> None:
        self.gateway_address = gateway_address
        self.gatewayname = gatewayname
        self.faskey = faskey
        self._clients: dict[str, dict[str, str]] = {}  # by MAC

    def arrive(self, ip: str, mac: str, redir: str = "http://example.com/") -> str:
        """A device joins: a new Preauthenticated client; the FAS query string openNDS would send it with."""
        token = secrets.token_hex(4)
        self._clients[mac] = {"ip": ip, "mac": mac, "token": token, "state": "Preauthenticated"}
        return (f"authaction=http://{self.gateway_address}/{AUTHDIR}/?clientip={ip}"
                f"&gatewayname={quote(self.gatewayname, safe='')}&tok={token}&redir={quote(redir, safe='')}")

    def _find(self, key: str) -> dict[str, str] | None:
        for c in self._clients.values():  # client_list_find_by_any: token (or rhid), then IP, then MAC
            if c["token"] == key or (len(key) > 8 and rhid(token_hid(c["token"]), self.faskey) == key):
                return c
        return next((c for c in self._clients.values() if key in (c["ip"], c["mac"])), None)

    async def client(self, key: str) -> NdsClient | None:
        c = self._find(key)
        return None if c is None else NdsClient(c["ip"], c["mac"], c["token"], c["state"], dict(c))

    async def auth(self, client: str, *, minutes: int, upload_kbps: int = 0, download_kbps: int = 0,
                   upload_quota_kb: int = 0, download_quota_kb: int = 0, custom: str = "") -> None:
        from drivers.wifi.ndsctl import EXIT_NO, NdsCtlError

        c = self._find(client)
        if c is None or c["state"] != "Preauthenticated":
            raise NdsCtlError(f"demo openNDS: failed to authenticate client {client}", EXIT_NO)
        c["state"] = "Authenticated"

    async def deauth(self, client: str) -> bool:
        c = self._find(client)
        if c is None or c["state"] != "Authenticated":
            return False
        del self._clients[c["mac"]]
        return True
