"""The qr/set document without a daemon: codes, targets and hosts refused with their key paths; the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.documents import DocumentError, parse_document
from agent.o2o.qr_codes import CODE_RE, QrDoc, QrStore, check_targets, target_problem

HOSTS = ["shop.example.com", "www.example.com"]


def doc(*codes: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "base_url": "https://go.example.com", "allowed_hosts": HOSTS, "codes": list(codes), **top}


def errors_of(document: dict[str, Any]) -> list[dict[str, str]]:
    import json

    try:
        parsed = parse_document(QrDoc, json.dumps(document).encode(), max_bytes=1 << 20)
    except DocumentError as exc:
        return exc.errors
    return check_targets(parsed)


@pytest.mark.parametrize(("target", "message"), [
    ("javascript:alert(1)", "only http and https URLs are allowed (got javascript:)"),
    ("JavaScript:alert(document.cookie)//https://shop.example.com", "only http and https URLs are allowed"),
    ("data:text/html,<script>alert(1)</script>", "only http and https URLs are allowed (got data:)"),
    ("//shop.example.com/x", "only http and https URLs are allowed (got no scheme)"),
    ("https://evil.example/x", "host 'evil.example' is not in allowed_hosts"),
    ("https://shop.example.com.evil.example/", "host 'shop.example.com.evil.example' is not in allowed_hosts"),
    ("https://shop.example.com@evil.example/", "a user name in the URL is refused"),
    ("https://evil.example\\@shop.example.com/", "spaces, control characters and backslashes are refused"),
    ("https://shop.example.com/\r\nSet-Cookie: x=1", "spaces, control characters and backslashes are refused"),
    ("https://shop.example.com:99999/", "not a URL"),
    ("https:///nohost", "the URL has no host"),
])
def test_bad_targets_are_refused_with_their_key_path(target: str, message: str) -> None:
    errors = errors_of(doc({"code": "ok", "target": "https://shop.example.com/a"}, {"code": "bad", "target": target}))
    assert len(errors) == 1 and errors[0]["path"] == "codes[1].target", errors
    assert errors[0]["message"].startswith(message), errors


def test_good_targets() -> None:
    for target in ("https://shop.example.com/sale?utm=qr#top", "http://www.example.com", "https://SHOP.example.com/x",
                   "https://shop.example.com:8443/x"):
        assert target_problem(target, HOSTS) is None, target


@pytest.mark.parametrize("code", ["../admin", "a/b", "a.svg", "a%2Fb", "a b", "", "-lead", "x" * 65, "é"])
def test_codes_with_path_characters_are_refused(code: str) -> None:
    errors = errors_of(doc({"code": code, "target": "https://shop.example.com/"}))
    assert errors[0]["path"] == "codes[0].code" and "letters, digits" in errors[0]["message"], errors


def test_document_shape_errors() -> None:
    assert errors_of(doc(base_url="javascript:x"))[0]["path"] == "base_url"
    assert errors_of(doc(base_url="https://go.example.com/?x=1"))[0]["message"].startswith("no query")
    assert errors_of(doc(allowed_hosts=["shop example"]))[0]["path"] == "allowed_hosts"
    assert errors_of({**doc(), "extra": 1})[0]["path"] == "extra"
    assert errors_of(doc({"code": "a", "target": "https://shop.example.com/", "zone": "a/b"}))[0]["path"] == "codes[0].zone"
    dup = errors_of(doc({"code": "a", "target": "https://shop.example.com/1"},
                        {"code": "a", "target": "https://shop.example.com/2"}))
    assert dup == [{"path": "codes[1].code", "message": "duplicate code 'a' (also codes[0])"}]
    with pytest.raises(DocumentError, match="payload too large"):
        parse_document(QrDoc, b"{" + b" " * (5 * 1024 * 1024) + b"}", max_bytes=2 * 1024 * 1024)


def test_every_bad_target_is_reported_not_just_the_first() -> None:
    errors = errors_of(doc(*({"code": f"c{i}", "target": "javascript:void(0)"} for i in range(5))))
    assert [e["path"] for e in errors] == [f"codes[{i}].target" for i in range(5)]


@given(st.text(max_size=80))
def test_any_code_either_matches_the_safe_alphabet_or_is_refused(code: str) -> None:
    if CODE_RE.fullmatch(code):
        assert not set(code) & set("/.%?#\\ \t\n")
    else:
        assert errors_of(doc({"code": code, "target": "https://shop.example.com/"}))


@given(st.text(max_size=120))
def test_any_accepted_target_is_http_on_an_allowed_host(target: str) -> None:
    from urllib.parse import urlsplit

    if target_problem(target, HOSTS) is None:
        parts = urlsplit(target)
        assert parts.scheme.lower() in ("http", "https") and parts.hostname in HOSTS and "@" not in parts.netloc


async def test_the_store_keeps_the_document_and_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "o2o.db"
    store = QrStore(path)
    await store.open()
    assert store.version == 0 and store.codes == {}
    d1 = QrDoc.model_validate(doc({"code": "a", "target": "https://shop.example.com/1", "zone": "shoes"},
                                  {"code": "b", "target": "https://shop.example.com/2", "campaign": "spring"}))
    await store.replace(d1)
    for _ in range(3):
        store.count("a", 1000.0)
    store.count("b", 1001.0)
    assert await store.flush() == 4
    store.count("a", 1002.0)
    await store.close()  # flushes the last one

    store = QrStore(path)
    await store.open()
    assert store.version == 1 and store.doc == d1.model_copy(update={"base_url": "https://go.example.com"})
    assert (store.scans["a"].count, store.scans["a"].last, store.scans["b"].count) == (4, 1002.0, 1)
    d2 = QrDoc.model_validate({**doc({"code": "a", "target": "https://www.example.com/new"}), "version": 2})
    await store.replace(d2)
    assert set(store.codes) == {"a"} and set(store.scans) == {"a"} and store.scans["a"].count == 4
    await store.close()
    store = QrStore(path)
    await store.open()
    assert store.codes["a"].target == "https://www.example.com/new" and set(store.scans) == {"a"}
    await store.close()
