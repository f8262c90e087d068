"""Signing keys: files and modes, no overwrite, and signatures the gateway's own check accepts."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from agent.config_push import verify_push
from agent.errors import ConfigError
from agent.ops.errors import UsageError
from agent.ops.keys import keygen, load_signing_key, sign
from tests.conftest import make_config


def test_keygen_writes_a_0600_private_key_and_refuses_to_overwrite(tmp_path: Path, ops) -> None:  # type: ignore[no-untyped-def]
    r = ops("keygen", tmp_path / "k")
    assert r.code == 0, r
    private, public = tmp_path / "k" / "config-signing.key", tmp_path / "k" / "config-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    line = r.out.splitlines()[-1]
    assert line == f'config_public_key = "{public.read_text().strip()}"'
    assert len(base64.b64decode(public.read_text())) == 32
    before = private.read_bytes()
    r = ops("keygen", tmp_path / "k")
    assert r.code == 2 and "already exists: not overwriting a signing key" in r.err
    assert private.read_bytes() == before


def test_a_signed_push_passes_the_gateways_own_verification(tmp_path: Path) -> None:
    pair = keygen(tmp_path / "k")
    key, warning = load_signing_key(pair.private_path)
    assert warning is None
    local = make_config(tmp_path, mqtt={"config_public_key": pair.public_b64})
    doc = sign({"version": 4, "store": {"name": "Café Odéon"}, "rfid": {"gone_after_s": 2.5}}, key)
    config = verify_push(json.dumps(doc, ensure_ascii=False).encode(), local, local)
    assert config.version == 4 and config.store.name == "Café Odéon"
    tampered = {**doc, "version": 5}
    with pytest.raises(ConfigError, match="bad signature"):
        verify_push(json.dumps(tampered).encode(), local, local)


def test_a_raw_base64_private_key_loads_and_loose_modes_are_warned_about(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = keygen(tmp_path / "k")
    pem_key, _ = load_signing_key(pair.private_path)
    raw = pem_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    raw_file = tmp_path / "raw.key"
    raw_file.write_text(base64.b64encode(raw).decode() + "\n")
    raw_file.chmod(0o644)
    key, warning = load_signing_key(raw_file)
    assert sign({"version": 1}, key) == sign({"version": 1}, pem_key)
    assert warning is not None and "mode 0644" in warning
    for content, message in ((b"not a key", "neither a PEM key nor base64"), (base64.b64encode(b"x" * 31), "is 31")):
        raw_file.write_bytes(content)
        with pytest.raises(UsageError, match=message):
            load_signing_key(raw_file)
