"""openNDS Forward Authentication Service (FAS) queries, sans-IO: the query string in, the client out.

openNDS 10.x/11.x (src/fas.c and the PHP reference FAS scripts, fas-hid.php and fas-aes-https.php) sends the
guest's browser to the FAS with:
  level 0  clientip, clientmac, gatewayname, tok, redir, ... as plain query parameters
  level 1/2  ?fas=BASE64("hid=…, clientip=…, clientmac=…, …") — ", "-separated key=value pairs, values
           URL-encoded; the FAS authenticates with rhid = sha256hex(hid + faskey)
  level 3  ?fas=BASE64(BASE64(AES-256-CBC(the same text)))&iv=IV — key: faskey NUL-padded or cut to 32
           bytes (PHP's openssl_encrypt), IV: the 16 ASCII characters of `iv`, PKCS#7 padding
Anything that does not decode to a client with a valid IP and MAC raises FasError.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["FasClient", "FasError", "parse_fas", "rhid"]

_SEP = ", "
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# A FAS query is a few hundred bytes; a huge one is an attack on the base64/AES decoders.
MAX_QUERY = 8192


class FasError(ValueError):
    """A FAS query that is forged, truncated or for another gateway."""


@dataclass(frozen=True, slots=True)
class FasClient:
    clientip: str
    clientmac: str
    hid: str | None
    gatewayname: str
    gatewayaddress: str
    originurl: str
    fields: dict[str, str]


def rhid(hid: str, faskey: str) -> str:
    """What a level 1/2 FAS hands back to authenticate a client: sha256hex(hid + faskey)."""
    return hashlib.sha256((hid + faskey).encode()).hexdigest()


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(_SEP):
        key, sep, value = item.partition("=")
        if sep and key.isidentifier():
            out[key] = unquote(value)
    return out


def _aes_decrypt(blob_b64: str, faskey: str, iv: str) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(iv) != 16:
        raise FasError("iv must be 16 characters")
    key = (faskey.encode() + b"\0" * 32)[:32]
    try:
        ciphertext = base64.b64decode(base64.b64decode(blob_b64, validate=True), validate=True)
        if not ciphertext or len(ciphertext) % 16:
            raise FasError("ciphertext is not whole AES blocks")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv.encode())).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise FasError(f"cannot decrypt the fas query (wrong faskey, or forged): {exc}") from exc


def parse_fas(query: Mapping[str, str], *, level: int, faskey: str | None = None) -> FasClient:
    if sum(len(k) + len(v) for k, v in query.items()) > MAX_QUERY:
        raise FasError("query too long")
    if level == 0:
        fields = {k: v for k, v in query.items() if k.isidentifier()}
    else:
        fas = query.get("fas")
        if not fas:
            raise FasError("no fas parameter")
        # openNDS does not URL-encode the base64, so a '+' in it arrives as a space after query decoding.
        fas = fas.replace(" ", "+")
        if level in (1, 2):
            try:
                text = base64.b64decode(fas, validate=True).decode("utf-8")
            except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII input
                raise FasError(f"fas is not base64 text: {exc}") from exc
        elif level == 3:
            if not faskey:
                raise FasError("level 3 needs the faskey")
            text = _aes_decrypt(fas, faskey, query.get("iv", ""))
        else:
            raise FasError(f"unknown FAS level {level}")
        fields = _pairs(text)
    ip, mac = fields.get("clientip", ""), fields.get("clientmac", "")
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise FasError(f"bad clientip {ip[:40]!r}") from exc
    if not _MAC.match(mac):
        raise FasError(f"bad clientmac {mac[:40]!r}")
    hid = fields.get("hid")
    if level in (1, 2, 3) and (hid is None or not re.fullmatch(r"[0-9a-f]{64}", hid)):
        raise FasError("missing or malformed hid")
    return FasClient(ip, mac.lower(), hid, fields.get("gatewayname", ""), fields.get("gatewayaddress", ""),
                     fields.get("originurl", "") or fields.get("redir", ""), fields)
