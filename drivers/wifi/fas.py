"""openNDS Forward Authentication Service (FAS) queries, sans-IO: the query string in, the client out.

What openNDS 11.0.0beta (openNDS/openNDS @ b9fbb8d) sends the guest's browser to the FAS with, by
`fas_secure_enabled` level (src/http_microhttpd.c, construct_querystring and encode_and_redirect_to_splashpage):

  0     FAS?authaction=http://GATEWAYADDRESS/AUTHDIR/?clientip=IP&gatewayname=NAME&tok=TOKEN&redir=ORIGINURL
        (1318-1320 and 1455-1461): once the query is decoded, `clientip` is inside `authaction` (after its own
        `?`), `tok` is the client's token in clear, and there is no clientmac.
  1, 4  FAS?fas=BASE64(TEXT) (1463-1502); 4 is 1 over https (src/main.c 701-706).
  2, 3  FAS?fas=BASE64(openssl_encrypt(TEXT, "aes-256-cbc", faskey, 0, iv))&iv=IV (1592-1650): PHP run by
        openNDS; openssl_encrypt with options 0 returns base64, so the AES ciphertext is base64 twice. PHP pads a
        short key with NULs and uses the first 32 bytes of a long one; IV is the 16 ASCII hex characters
        substr(sha256hex(base64(8 random bytes)), 0, 16), used as the raw 16-byte IV; PKCS#7 padding. 3 is 2
        over https.

TEXT is ", "-separated key=value pairs (QUERYSEPARATOR, src/common.h:67): hid, clientip, clientmac, client_type,
cpi_query, gatewayname, gatewayurl, version, gatewayaddress, gatewaymac, [authdir at levels 2 and 3 only],
originurl, clientif, themespec, then the fas_custom_* parameters each followed by ", " (main.c 376-446); unset
ones print as "(null)". gatewayname, gatewayurl and originurl are URL-encoded.

hid = sha256hex(token) (src/client_list.c 122-127). To authenticate the client, a FAS hands back `tok` at level 0
and rhid = sha256hex(hid + faskey) at levels 1-4 (src/http_microhttpd.c 535-583); `ndsctl json|auth|deauth`
accept the same value to find the client (src/client_list.c 319-362: longer than 8 characters = rhid), and also
the client's token, IP or MAC (216-233). openNDS generates a faskey when its config sets none (src/conf.c, "Generate
a unique faskey if not set in config"): without a copy of it levels 1 and 4 still work (lookup_key), 2 and 3 do not.

Anything that is not such a query raises FasError, the one error of this module.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["FAS_LEVELS", "FasClient", "FasError", "lookup_key", "parse_fas", "rhid", "token_hid"]

FAS_LEVELS: Final = (0, 1, 2, 3, 4)
_SEP: Final = ", "
_MAC: Final = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_HID: Final = re.compile(r"[0-9a-f]{64}")  # sha256sum output
_TOKEN: Final = re.compile(r"[0-9a-f]{8}")  # "%04hx%04hx" of two rand16() (src/client_list.c:125)
_IV: Final = re.compile(r"[0-9a-f]{16}")  # 16 characters of a sha256 hex digest
# What openNDS writes into TEXT itself; any other key comes from the fas_custom_* options of its config.
_OPENNDS_KEYS: Final = frozenset({"hid", "clientip", "clientmac", "client_type", "cpi_query", "gatewayname",
                                  "gatewayurl", "version", "gatewayaddress", "gatewaymac", "authdir", "originurl",
                                  "clientif", "themespec"})
# A FAS query is a few hundred bytes (openNDS caps it at QUERYMAXLEN 8192, src/common.h:61); a bigger one is an
# attack on the base64/AES decoders.
MAX_QUERY: Final = 8192


class FasError(ValueError):
    """A FAS query that is forged, truncated, for another gateway or another FAS level."""


@dataclass(frozen=True, slots=True)
class FasClient:
    """A guest as openNDS described it to the FAS. Nothing here is proof: check it with `ndsctl json`."""

    level: int
    clientip: str
    clientmac: str | None  # None at level 0: openNDS does not send it
    tok: str | None  # level 0: the client's token, in clear
    hid: str | None  # levels 1-4: sha256hex(token); hand back rhid(hid, faskey)
    gatewayname: str
    gatewayaddress: str  # "IP:PORT" of openNDS's own web server
    authdir: str | None  # levels 0, 2 and 3 (levels 1 and 4 do not send it; openNDS's default is "opennds_auth")
    originurl: str
    client_type: str | None  # "cpd_can", "cpi_url", "cpi_api", "preemptive" (not sent at level 0)
    custom: dict[str, str]  # the fas_custom_* parameters of openNDS's config
    fields: dict[str, str]  # every key=value openNDS sent, decoded


def token_hid(token: str) -> str:
    """The hid openNDS derives from a client's token: sha256hex(token) (src/client_list.c:126, util.c:568-586)."""
    return hashlib.sha256(token.encode()).hexdigest()


def rhid(hid: str, faskey: str) -> str:
    """What a level 1-4 FAS hands back to authenticate a client: sha256hex(hid + faskey)
    (src/http_microhttpd.c:556-566; fas-hid.php `hash('sha256', $hid.$key)`)."""
    return hashlib.sha256((hid + faskey).encode()).hexdigest()


def lookup_key(client: FasClient, faskey: str = "") -> str:
    """What `ndsctl json` is to find this client by (openNDS tries token, then IP, then MAC: src/client_list.c
    216-233): `tok` at level 0; at levels 1-4 rhid when the faskey is known, else the client's IP, which the
    caller checks is the HTTP peer's. Either way the hid must then match the token openNDS reports."""
    if client.level == 0:
        if client.tok is None:
            raise FasError("level 0 client without tok")
        return client.tok
    if client.hid is None:
        raise FasError(f"level {client.level} client without hid")
    return rhid(client.hid, faskey) if faskey else client.clientip


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(_SEP):
        key, sep, value = item.partition("=")
        if sep and key.isidentifier():
            out.setdefault(key, unquote(value))  # the first wins, as in the reference FAS scripts' loops
    return out


def _b64(text: str, what: str) -> bytes:
    # openNDS does not URL-encode the base64, so a '+' in it arrives as a space after query decoding.
    try:
        return base64.b64decode(text.replace(" ", "+"), validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII input
        raise FasError(f"{what} is not base64: {exc}") from exc


def _aes_decrypt(fas: str, faskey: str, iv: str) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if not _IV.fullmatch(iv):
        raise FasError("iv must be 16 hex characters")
    key = (faskey.encode() + b"\0" * 32)[:32]
    try:
        ciphertext = _b64(_b64(fas, "fas").decode("ascii"), "the inner fas")
        if not ciphertext or len(ciphertext) % 16:
            raise FasError("ciphertext is not whole AES blocks")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv.encode())).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except FasError:
        raise
    except ValueError as exc:  # bad padding, UnicodeDecodeError
        raise FasError(f"cannot decrypt the fas query (wrong faskey, or forged): {exc}") from exc


def _level0(query: Mapping[str, str]) -> dict[str, str]:
    fields = {k: v for k, v in query.items() if k.isidentifier()}
    try:
        action = urlsplit(query.get("authaction", ""))
    except ValueError as exc:  # e.g. an unclosed '[' in the host
        raise FasError(f"authaction is not a URL: {exc}") from exc
    inner = dict(parse_qsl(action.query))
    if action.scheme != "http" or not action.netloc or "clientip" not in inner:
        raise FasError("level 0 query without authaction=http://GATEWAY/AUTHDIR/?clientip=IP")
    fields["clientip"] = inner["clientip"]
    fields["gatewayaddress"] = action.netloc
    fields["authdir"] = action.path.strip("/")
    tok = fields.get("tok", "")
    if not _TOKEN.fullmatch(tok):
        raise FasError("missing or malformed tok")
    return fields


def parse_fas(query: Mapping[str, str], *, level: int, faskey: str = "") -> FasClient:
    """The client in a decoded FAS query string, for openNDS's fas_secure_enabled `level`."""
    if sum(len(k) + len(v) for k, v in query.items()) > MAX_QUERY:
        raise FasError("query too long")
    if level == 0:
        fields = _level0(query)
    elif level in FAS_LEVELS:
        fas = query.get("fas")
        if not fas:
            raise FasError("no fas parameter")
        if level in (1, 4):
            try:
                text = _b64(fas, "fas").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FasError(f"fas is not text: {exc}") from exc
        else:
            if not faskey:
                raise FasError(f"level {level} needs the faskey")
            text = _aes_decrypt(fas, faskey, query.get("iv", ""))
        fields = _pairs(text)
    else:
        raise FasError(f"unknown FAS level {level}")
    ip = fields.get("clientip", "")
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise FasError(f"bad clientip {ip[:40]!r}") from exc
    mac: str | None = None
    hid: str | None = None
    if level > 0:
        mac = fields.get("clientmac", "")
        if not _MAC.fullmatch(mac):
            raise FasError(f"bad clientmac {mac[:40]!r}")
        mac = mac.lower()
        hid = fields.get("hid", "")
        if not _HID.fullmatch(hid):
            raise FasError("missing or malformed hid")
    custom = {k: v for k, v in fields.items() if k not in _OPENNDS_KEYS} if level > 0 else {}
    return FasClient(level=level, clientip=ip, clientmac=mac, tok=fields.get("tok") if level == 0 else None,
                     hid=hid, gatewayname=fields.get("gatewayname", ""),
                     gatewayaddress=fields.get("gatewayaddress", ""), authdir=fields.get("authdir"),
                     originurl=fields.get("redir" if level == 0 else "originurl", ""),
                     client_type=fields.get("client_type"), custom=custom, fields=fields)
