"""Ed25519 keys that sign config pushes.

`keygen DIR` writes two files:

    DIR/config-signing.key   the private key, PEM (PKCS#8, unencrypted), mode 0600; stays with central ops
    DIR/config-signing.pub   the public key: base64 of its 32 raw bytes, one line

and the line to paste into the `[mqtt]` section of every gateway's config
file: `config_public_key = "<base64>"`. The gateway holds only that.

`load_signing_key` also reads a private key given as the base64 of its 32 raw
bytes (what some secret stores hand out). A signature is the base64 Ed25519
signature of the document's canonical form (agent/config_push.py `canonical`).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config_push import canonical
from agent.ops.errors import UsageError

__all__ = ["PRIVATE_NAME", "PUBLIC_NAME", "KeyPair", "keygen", "load_signing_key", "public_key_b64", "sign"]

PRIVATE_NAME = "config-signing.key"
PUBLIC_NAME = "config-signing.pub"


class KeyPair:
    def __init__(self, private_path: Path, public_path: Path, public_b64: str) -> None:
        self.private_path = private_path
        self.public_path = public_path
        self.public_b64 = public_b64

    @property
    def config_line(self) -> str:
        return f'config_public_key = "{self.public_b64}"'


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def keygen(directory: Path) -> KeyPair:
    """A new key pair in `directory` (created 0700 if missing); never overwrites either file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} already exists: not overwriting a signing key (move it away first)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # O_EXCL: a file that appeared since the check above is not overwritten either; 0600 from the first byte.
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{private_path} already exists: not overwriting a signing key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(private_path, 0o600)  # in case the umask took bits away from a wider mode (never adds)
    public_b64 = public_key_b64(key)
    with open(public_path, "x", encoding="ascii") as f:
        f.write(public_b64 + "\n")
    return KeyPair(private_path, public_path, public_b64)


def load_signing_key(path: Path) -> tuple[Ed25519PrivateKey, str | None]:
    """The private key in `path` (PEM or base64 of the raw 32 bytes) and a warning if others can read it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    warning = None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path} is not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError(f"{path} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
        return key, warning
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except binascii.Error as exc:
        raise UsageError(f"{path} is neither a PEM key nor base64 of a raw Ed25519 key") from exc
    if len(raw) != 32:
        raise UsageError(f"{path}: a raw Ed25519 private key is 32 bytes, this one is {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw), warning


def sign(document: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The document with its `signature` (over the canonical form of everything else)."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return {**body, "signature": base64.b64encode(key.sign(canonical(body))).decode()}
