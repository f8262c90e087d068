"""Builds opennds_vectors.json: FAS redirects for levels 0-4, made the way openNDS makes them.

    .venv/bin/python tests/drivers/wifi/make_opennds_vectors.py          # rewrite the JSON
    .venv/bin/python tests/drivers/wifi/make_opennds_vectors.py --check  # exit 1 if it differs

Source: openNDS/openNDS @ b9fbb8d1e8b0619070d1cf0cbfdfcb5fcd2432a7 (11.0.0beta), src/http_microhttpd.c:
- level 0, construct_querystring 1455-1461 and encode_and_redirect_to_splashpage 1318-1320:
  "%s?authaction=http://%s/%s/%s" (fas_url, gw_address, authdir, "?clientip=%s&gatewayname=%s&tok=%s&redir=%s")
- levels 1 and 4, 1463-1502: "?fas=" + b64_encode(TEXT) (b64_encode: http_microhttpd_utils.c 176-214, the
  standard alphabet with '=' padding, no line breaks)
- levels 2 and 3, 1592-1650: TEXT (with authdir) handed to `php` as
      $secret_iv = base64_encode(openssl_random_pseudo_bytes("8"));
      $iv = substr(openssl_digest($secret_iv, "sha256"), 0, 16 );
      $string = base64_encode( openssl_encrypt( $string, "aes-256-cbc", $key, 0, $iv ) );
      echo "?fas=".$string."&iv=".$iv;
  Here the 8 random bytes are fixed (SECRET_IV_BYTES) and openssl_encrypt is done by the openssl binary:
      openssl enc -aes-256-cbc -K HEX(faskey NUL-padded / cut to 32 bytes) -iv HEX(the 16 ASCII iv characters) -a -A
  which is what PHP does with a string key (NUL-padded when short, the first 32 bytes when long), an iv of
  exactly 16 bytes and options 0 (base64 output, PKCS#7 padding). test_fas.py runs openNDS's PHP snippet itself
  when `php` is installed and checks it prints the same "?fas=…&iv=…".
- fas_url: "%s://%s:%u%s" (protocol, fasremotefqdn or fasremoteip, fasport, faspath), https for levels >= 3
  (src/main.c 701-721).
- hid = sha256sum of the token (src/client_list.c 122-127, util.c 568-586); the token is "%04hx%04hx".
- TEXT values: gatewayname and gatewayurl are uh_urlencode()d (src/main.c 541, http_microhttpd.c 1436-1447),
  originurl is uh_urlencode("http://" host url query) (1397-1398); unset pointers print as "(null)" (glibc and
  musl printf); fas_custom_parameters_list entries are each followed by ", " (src/main.c 376-392), and
  custom_vars is "" rather than NULL as soon as custom parameters are configured (src/main.c 394-410).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("opennds_vectors.json")
SOURCE = "openNDS/openNDS @ b9fbb8d1e8b0619070d1cf0cbfdfcb5fcd2432a7 (11.0.0beta)"
VERSION = "11.0.0beta"  # src/conf.h:33
TOKEN = "1a2b3c4d"
FASKEY = "c775e7b757ede630cd0aa1113bd102661ab38829ca52a6422ab782862f268646"  # `echo … | sha256sum`, 64 chars
SHORT_FASKEY = "1234567890"  # shorter than 32 bytes: PHP NUL-pads it
SECRET_IV_BYTES = bytes(range(8))  # openssl_random_pseudo_bytes("8"), fixed here
CLIENT_IP = "192.168.8.123"
CLIENT_MAC = "aa:bb:cc:dd:ee:ff"
GW_IP = "192.168.8.1"
GW_ADDRESS = "192.168.8.1:2050"  # config->gw_address: gatewayaddress:gatewayport
GW_MAC = "11:22:33:44:55:66"
GW_NAME = "o2o Edge Test"
AUTHDIR = "opennds_auth"  # DEFAULT_AUTHDIR
ORIGIN = "http://connectivitycheck.gstatic.com/generate_204"
CUSTOM = "location=shop-7, admin_email=ops@example.com, "  # two fas_custom_parameters_list entries
FAS_HOST = "fas.example.net"


def uh_urlencode(text: str) -> str:
    """src/http_microhttpd_utils.c 147-173: alnum and -_.~ kept, everything else %xx in lower-case hex."""
    return "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~") else f"%{b:02x}"
                   for b in text.encode())


def c(value: str | None) -> str:
    return "(null)" if value is None else value


def text(hid: str, *, authdir: bool, clientif: str, custom: str | None, ip: str = CLIENT_IP,
         mac: str = CLIENT_MAC) -> str:
    """TEXT as snprintf()ed at src/http_microhttpd.c 1475-1494 (levels 1, 4) and 1599-1619 (levels 2, 3)."""
    parts = [f"hid={hid}", f"clientip={ip}", f"clientmac={mac}", "client_type=cpd_can",
             f"cpi_query={c(None)}", f"gatewayname={uh_urlencode(GW_NAME)}",
             f"gatewayurl={uh_urlencode('http://' + GW_IP)}", f"version={VERSION}", f"gatewayaddress={GW_ADDRESS}",
             f"gatewaymac={GW_MAC}"]
    if authdir:
        parts.append(f"authdir={AUTHDIR}")
    parts += [f"originurl={uh_urlencode(ORIGIN)}", f"clientif={clientif}", f"themespec={c(None)}"]
    # custom_params, custom_vars, custom_images, custom_files: NULL unless configured, but custom_vars is set
    # (to "" when no variable is configured) whenever custom parameters are (src/main.c:397 tests the parameters list)
    custom_vars = None if custom is None else ""
    return ", ".join(parts) + ", " + c(custom) + c(custom_vars) + c(None) + c(None)


def fas_url(level: int, path: str) -> str:
    return f"{'https' if level >= 3 else 'http'}://{FAS_HOST}:{443 if level >= 3 else 80}{path}"


def aes_key_hex(faskey: str) -> str:
    return (faskey.encode() + b"\0" * 32)[:32].hex()


def openssl_cmd(faskey: str, iv: str) -> list[str]:
    return ["openssl", "enc", "-aes-256-cbc", "-K", aes_key_hex(faskey), "-iv", iv.encode().hex(), "-a", "-A"]


def encrypt(plaintext: str, faskey: str, secret_iv_bytes: bytes = SECRET_IV_BYTES) -> dict[str, str]:
    secret_iv = base64.b64encode(secret_iv_bytes).decode()
    iv = hashlib.sha256(secret_iv.encode()).hexdigest()[:16]
    cmd = openssl_cmd(faskey, iv)
    inner = subprocess.run(cmd, input=plaintext.encode(), capture_output=True, check=True).stdout.decode().strip()
    return {"secret_iv": secret_iv, "iv": iv, "openssl": " ".join(cmd), "inner_b64": inner,
            "fas": base64.b64encode(inner.encode()).decode()}


# The program openNDS pipes into `php` (src/http_microhttpd.c 1623-1636, a C format with %s for faskey and TEXT),
# with openssl_random_pseudo_bytes("8") replaced by hex2bin() of SECRET_IV_BYTES.
PHP_PROGRAM = "<?php \n" + """$key="@KEY@";
$string="@STRING@";
$cipher="aes-256-cbc";
if (in_array($cipher, openssl_get_cipher_methods())) {
$secret_iv = base64_encode(hex2bin("@SECRET@"));
$iv = substr(openssl_digest($secret_iv, "sha256"), 0, 16 );
$string = base64_encode( openssl_encrypt( $string, $cipher, $key, 0, $iv ) );
echo "?fas=".$string."&iv=".$iv;
}
 ?>"""


def php_program(faskey: str, plaintext: str) -> str:
    return (PHP_PROGRAM.replace("@KEY@", faskey).replace("@STRING@", plaintext)
            .replace("@SECRET@", SECRET_IV_BYTES.hex()))


def build() -> dict[str, Any]:
    hid = hashlib.sha256(TOKEN.encode()).hexdigest()
    v: dict[str, Any] = {
        "source": SOURCE, "version": VERSION, "token": TOKEN, "hid": hid, "faskey": FASKEY,
        "rhid": hashlib.sha256((hid + FASKEY).encode()).hexdigest(),
        "client": {"ip": CLIENT_IP, "mac": CLIENT_MAC, "gatewayname": GW_NAME, "gatewayaddress": GW_ADDRESS,
                   "authdir": AUTHDIR, "originurl": ORIGIN},
    }
    v["level0"] = {"url": f"{fas_url(0, '/portal/')}?authaction=http://{GW_ADDRESS}/{AUTHDIR}/"
                          f"?clientip={CLIENT_IP}&gatewayname={uh_urlencode(GW_NAME)}&tok={TOKEN}"
                          f"&redir={uh_urlencode(ORIGIN)}"}
    for level, path, custom, clientif in ((1, "/nds/fas-hid.php", None, "wlan0"),
                                          (4, "/nds/fas-hid-https.php", CUSTOM, "wlan0 11:22:33:44:55:66 o2o-guest")):
        plain = text(hid, authdir=False, clientif=clientif, custom=custom)
        fas = base64.b64encode(plain.encode()).decode()
        v[f"level{level}"] = {"plaintext": plain, "fas": fas, "url": f"{fas_url(level, path)}?fas={fas}"}
    for level, path, custom in ((2, "/nds/fas-aes.php", CUSTOM), (3, "/nds/fas-aes-https.php", None)):
        plain = text(hid, authdir=True, clientif="wlan0", custom=custom)
        enc = encrypt(plain, FASKEY)
        v[f"level{level}"] = {"plaintext": plain, **enc,
                              "url": f"{fas_url(level, path)}?fas={enc['fas']}&iv={enc['iv']}"}
    short = encrypt(v["level3"]["plaintext"], SHORT_FASKEY)
    v["level3"] |= {"short_faskey": SHORT_FASKEY, "short_openssl": short["openssl"], "fas_short": short["fas"]}
    return v


def query(level: int, *, ip: str, mac: str, token: str, faskey: str = FASKEY) -> str:
    """The query string openNDS sends the guest's browser to the FAS with, for this client (same steps as build)."""
    hid = hashlib.sha256(token.encode()).hexdigest()
    if level == 0:
        return (f"authaction=http://{GW_ADDRESS}/{AUTHDIR}/?clientip={ip}&gatewayname={uh_urlencode(GW_NAME)}"
                f"&tok={token}&redir={uh_urlencode(ORIGIN)}")
    plain = text(hid, authdir=level in (2, 3), clientif="wlan0", custom=None, ip=ip, mac=mac)
    if level in (1, 4):
        return "fas=" + base64.b64encode(plain.encode()).decode()
    enc = encrypt(plain, faskey, secret_iv_bytes=hashlib.sha256(token.encode()).digest()[:8])
    return f"fas={enc['fas']}&iv={enc['iv']}"


def main() -> int:
    rendered = json.dumps(build(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        same = OUT.read_text() == rendered
        print("opennds_vectors.json is up to date" if same else "opennds_vectors.json differs from a fresh build")
        return 0 if same else 1
    OUT.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
