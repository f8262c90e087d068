"""openNDS FAS queries at every fas_secure_enabled level, from vectors made the way openNDS makes them.

opennds_vectors.json is written by make_opennds_vectors.py (its docstring cites openNDS/openNDS @ b9fbb8d,
src/http_microhttpd.c 1318-1320, 1455-1650, src/client_list.c 122-127, src/main.c 376-446 and 701-721).
Levels 2 and 3 are encrypted with the openssl binary:

    openssl enc -aes-256-cbc -K HEX(faskey NUL-padded or cut to 32 bytes) -iv HEX(16 ASCII iv chars) -a -A

then base64 again, as openNDS's PHP does (http_microhttpd.c 1623-1636: base64_encode(openssl_encrypt($string,
"aes-256-cbc", $key, 0, $iv)), $iv = substr(openssl_digest($secret_iv, "sha256"), 0, 16)).
test_vectors_are_what_openssl_makes re-runs that; test_php_prints_the_same_query runs openNDS's PHP snippet
itself (with the 8 random bytes fixed) when `php` is installed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wifi.fas import FasClient, FasError, lookup_key, parse_fas, rhid, token_hid
from tests.drivers.wifi import make_opennds_vectors

V = json.loads((Path(__file__).parent / "opennds_vectors.json").read_text())
CUSTOM = {"location": "shop-7", "admin_email": "ops@example.com"}


def query_of(url: str) -> dict[str, str]:
    """What a web framework hands the FAS: the URL's query split on '&' and decoded once."""
    return dict(parse_qsl(urlsplit(url).query))


def parse_level(level: int, faskey: str = V["faskey"]) -> FasClient:
    return parse_fas(query_of(V[f"level{level}"]["url"]), level=level, faskey=faskey)


def test_level0_authaction_carries_clientip_and_there_is_no_mac() -> None:
    c = parse_level(0, None)
    assert (c.level, c.clientip, c.clientmac, c.tok, c.hid) == (0, "192.168.8.123", None, V["token"], None)
    assert (c.gatewayname, c.gatewayaddress, c.authdir) == ("o2o Edge Test", "192.168.8.1:2050", "opennds_auth")
    assert c.originurl == V["client"]["originurl"] and c.client_type is None and c.custom == {}
    assert lookup_key(c) == V["token"]


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_levels_1_to_4(level: int) -> None:
    c = parse_level(level)
    assert (c.level, c.clientip, c.clientmac, c.tok, c.hid) == (level, "192.168.8.123", "aa:bb:cc:dd:ee:ff", None,
                                                                 V["hid"])
    assert (c.gatewayname, c.gatewayaddress, c.client_type) == ("o2o Edge Test", "192.168.8.1:2050", "cpd_can")
    assert c.originurl == V["client"]["originurl"] and c.fields["gatewayurl"] == "http://192.168.8.1"
    assert c.authdir == ("opennds_auth" if level in (2, 3) else None)  # only levels 2 and 3 send authdir
    assert c.custom == (CUSTOM if level in (2, 4) else {})
    assert lookup_key(c, V["faskey"]) == V["rhid"] == rhid(V["hid"], V["faskey"])


def test_hid_is_sha256_of_the_token() -> None:
    assert token_hid(V["token"]) == V["hid"]


def test_short_faskey_is_nul_padded() -> None:
    query = {"fas": V["level3"]["fas_short"], "iv": V["level3"]["iv"]}
    assert parse_fas(query, level=3, faskey=V["level3"]["short_faskey"]).clientmac == "aa:bb:cc:dd:ee:ff"


def test_level2_is_encrypted_not_base64() -> None:
    query = query_of(V["level2"]["url"])
    with pytest.raises(FasError, match="bad clientip ''"):  # what the old parser said to every real level-2 guest
        parse_fas(query, level=1)
    with pytest.raises(FasError, match="needs the faskey"):
        parse_fas(query, level=2)


def test_plus_signs_turned_into_spaces_by_query_decoding_are_restored() -> None:
    for level in (1, 3):
        query = {k: v.replace("+", " ") for k, v in query_of(V[f"level{level}"]["url"]).items()}
        assert parse_fas(query, level=level, faskey=V["faskey"]).hid == V["hid"]


def test_custom_parameters_cannot_override_what_opennds_wrote() -> None:
    text = V["level1"]["plaintext"].replace("themespec=(null), ", "themespec=(null), clientip=6.6.6.6, zone=a, ")
    c = parse_fas({"fas": base64.b64encode(text.encode()).decode()}, level=1)
    assert c.clientip == "192.168.8.123" and c.custom == {"zone": "a"}


@pytest.mark.parametrize("level", [1, 4])
def test_without_the_faskey_levels_1_and_4_look_the_guest_up_by_its_address(level: int) -> None:
    """openNDS generates a faskey when its config sets none (src/conf.c): a gateway without a copy of it can
    still find the client, by the IP openNDS wrote in the query (checked against the HTTP peer by the caller)."""
    c = parse_level(level, "")
    assert lookup_key(c) == lookup_key(c, "") == "192.168.8.123"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


GOOD1 = V["level1"]["plaintext"]
LEVEL0 = query_of(V["level0"]["url"])


@pytest.mark.parametrize(("query", "level", "faskey", "error"), [
    ({}, 1, None, "no fas parameter"),
    (LEVEL0, 1, None, "no fas parameter"),
    ({"fas": "!!!not base64"}, 1, None, "not base64"),
    ({"fas": _b64(GOOD1.replace("clientmac=aa:bb:cc:dd:ee:ff", "clientmac=zz"))}, 4, None, "bad clientmac"),
    ({"fas": _b64(GOOD1.replace("clientip=192.168.8.123", "clientip=<script>"))}, 1, None, "bad clientip"),
    ({"fas": _b64(GOOD1.replace(V["hid"], "x" * 64))}, 1, None, "hid"),
    ({"fas": base64.b64encode(b"\xff\xfe").decode()}, 1, None, "not text"),
    ({"fas": V["level3"]["fas"], "iv": V["level3"]["iv"]}, 3, "wrong-key", "cannot decrypt"),
    ({"fas": V["level3"]["fas"], "iv": "short"}, 3, V["faskey"], "iv must be 16"),
    ({"fas": V["level3"]["fas"], "iv": V["level3"]["iv"]}, 3, None, "needs the faskey"),
    ({"fas": _b64("QUJD"), "iv": V["level3"]["iv"]}, 2, V["faskey"], "whole AES blocks"),
    ({"fas": "A" * 10_000}, 1, None, "too long"),
    ({k: v for k, v in LEVEL0.items() if k != "authaction"}, 0, None, "authaction"),
    (LEVEL0 | {"authaction": "http://192.168.8.1:2050/opennds_auth/"}, 0, None, "authaction"),
    (LEVEL0 | {"authaction": "http://[::1/opennds_auth/?clientip=1.2.3.4"}, 0, None, "not a URL"),
    (LEVEL0 | {"tok": "1a2b3c4d' OR 1"}, 0, None, "tok"),
    ({k: v for k, v in LEVEL0.items() if k != "tok"}, 0, None, "tok"),
    (LEVEL0, 5, None, "unknown FAS level"),
])
def test_forged_or_broken_queries(query: dict[str, str], level: int, faskey: str | None, error: str) -> None:
    with pytest.raises(FasError, match=error):
        parse_fas(query, level=level, faskey=faskey or "")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line tool")
def test_vectors_are_what_openssl_makes() -> None:
    assert make_opennds_vectors.build() == V


@pytest.mark.skipif(shutil.which("php") is None, reason="needs php-cli (Debian: apt-get install php-cli)")
@pytest.mark.parametrize(("level", "faskey", "fas_key"), [(2, V["faskey"], "fas"), (3, V["faskey"], "fas"),
                                                         (3, V["level3"]["short_faskey"], "fas_short")])
def test_php_prints_the_same_query(level: int, faskey: str, fas_key: str) -> None:
    """openNDS's own PHP (src/http_microhttpd.c 1623-1636), with openssl_random_pseudo_bytes("8") replaced by
    the vectors' fixed 8 bytes."""
    program = make_opennds_vectors.php_program(faskey, V[f"level{level}"]["plaintext"])
    out = subprocess.run(["php"], input=program.encode(), capture_output=True, check=True, timeout=30).stdout
    assert out.decode() == f"?fas={V[f'level{level}'][fas_key]}&iv={V[f'level{level}']['iv']}"


_QUERY_KEYS = st.sampled_from(["fas", "iv", "authaction", "tok", "clientip", "redir", "gatewayname"])
_AUTHACTION = st.builds(lambda host, path, q: f"http://{host}/{path}/?{q}", st.text(max_size=30),
                        st.text(max_size=20), st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_QUERY_KEYS, st.text(max_size=300), max_size=5), st.sampled_from([0, 1, 2, 3, 4]))
def test_fuzz_any_query_parses_or_raises_fas_error(query: dict[str, str], level: int) -> None:
    with contextlib.suppress(FasError):
        parse_fas(query, level=level, faskey="k" * 32)


@settings(max_examples=300, deadline=None)
@given(_AUTHACTION, st.text(max_size=12))
def test_fuzz_level0_authaction_parses_or_raises_fas_error(authaction: str, tok: str) -> None:
    with contextlib.suppress(FasError):
        parse_fas({"authaction": authaction, "tok": tok}, level=0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_any_decoded_text_parses_or_raises_fas_error(blob: bytes) -> None:
    for level in (1, 4):
        with contextlib.suppress(FasError):
            parse_fas({"fas": base64.b64encode(blob).decode()}, level=level)
