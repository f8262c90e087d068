"""config/example.toml is what store IT starts from: every key of the schema is in it with a comment, it
passes check-config, and (with this machine's paths and addresses) it connects to a TLS broker with a
password."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.config import Config, parse_config
from tests.agent.sync.test_connection import pki, tls_broker  # noqa: F401 - pki is a fixture
from tests.conftest import wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.toml"
KEY_LINE = re.compile(r"^(?P<hash>#\s*)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=")
HEADER = re.compile(r"^(?P<open>\[\[?)(?P<name>[A-Za-z0-9_.]+)\]\]?")


# -- the schema's keys ------------------------------------------------------------------------------------

def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds: itself, inside Optional/unions/Annotated, or as list items."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated, list):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def schema_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """Every key a config file can set: "rfid.readers[].baudrate", "checkout.gates[].alarm[].url", …
    (dicts and lists of plain values are one key: "rfid.readers[].zones", "ble.person_uuids")."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        models = _models(field.annotation)
        if not models:
            out.add(path)
        for sub in models:
            out |= schema_keys(sub, path + ("[]" if typing.get_origin(field.annotation) is list else ""))
    return out


# -- the example's keys -----------------------------------------------------------------------------------

def document_keys(value: Any, leaves: set[str], prefix: str = "") -> set[str]:
    """The schema keys a TOML document sets (walked as far as the schema goes)."""
    if prefix in leaves:
        return {prefix}
    if isinstance(value, dict):
        return {k for name, v in value.items() for k in document_keys(v, leaves, f"{prefix}.{name}" if prefix else name)}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return {k for v in value for k in document_keys(v, leaves, prefix + "[]")}
    return {prefix}


def example_lines() -> list[tuple[str, str, int]]:
    """(line, its table's schema path, the how-many-th time that table header appears) for every line."""
    arrays: set[str] = set()
    counts: dict[str, int] = {}
    table, out = "", []
    for line in EXAMPLE.read_text().splitlines():
        if m := HEADER.match(line):
            parts, path = m["name"].split("."), ""
            for i, part in enumerate(parts):
                path = f"{path}.{part}" if path else part
                if i == len(parts) - 1 and m["open"] == "[[":
                    arrays.add(path)
                path += "[]" if path in arrays or path.replace("[]", "") in arrays else ""
            table = path
            counts[table] = counts.get(table, 0) + 1
        out.append((line, table, counts.get(table, 1)))
    return out


def commented_keys(leaves: set[str]) -> set[str]:
    """Optional keys shown commented out ("# tls_cert = …"), parsed as TOML in their table."""
    found: set[str] = set()
    for line, table, _ in example_lines():
        m = KEY_LINE.match(line)
        if m and m["hash"]:
            try:
                doc = tomllib.loads(line[len(m["hash"]):])
            except tomllib.TOMLDecodeError:
                continue
            found |= document_keys(doc, leaves, table) if table else document_keys(doc, leaves)
    return found


def test_every_schema_key_is_in_the_example() -> None:
    leaves = schema_keys()
    present = document_keys(tomllib.loads(EXAMPLE.read_text()), leaves) | commented_keys(leaves)
    assert not leaves - present, f"keys of the schema missing from config/example.toml: {sorted(leaves - present)}"
    assert not present - leaves, f"keys in config/example.toml the schema does not have: {sorted(present - leaves)}"


def test_every_key_has_a_one_line_comment_where_it_first_appears() -> None:
    bare = []
    previous = ""
    for line, table, seen in example_lines():
        m = KEY_LINE.match(line)
        if m and seen == 1:
            after_value = line[m.end():]
            explained = "#" in after_value or (previous.startswith("#") and not KEY_LINE.match(previous))
            if not explained:
                bare.append(f"[{table}] {line.strip()}")
        previous = line.strip()
    assert not bare, "keys without a comment:\n" + "\n".join(bare)


def test_the_example_passes_check_config() -> None:
    exe = Path(sys.executable).with_name("o2o-edge")
    out = subprocess.run([str(exe), "check-config", str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ok (store paris-odeon, gateway gw-1, 3 reader(s)" in out.stdout
    assert "still the example's placeholder" in out.stderr  # and it says what to replace


async def test_the_example_connects_to_a_tls_broker_with_a_password(tmp_path: Path, pki: dict[str, Path],  # noqa: F811
                                                                    start_agent) -> None:  # type: ignore[no-untyped-def]
    doc = tomllib.loads(EXAMPLE.read_text())
    mqtt = doc["mqtt"]
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), mqtt["username"], mqtt["password"]], check=True,
                   capture_output=True, timeout=30)
    broker = tls_broker(tmp_path, pki, require_cert=False)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
                           + f"password_file {passwd}\n")
    broker.start()
    try:
        # What differs on this machine: where files live, which addresses it has, where the broker is.
        doc["storage"]["path"] = str(tmp_path / "o2o-edge.db")
        doc["http"]["listen"] = "127.0.0.1:0"
        doc["wifi"]["portal"]["listen"] = "127.0.0.1:0"
        doc["mqtt"].update(host="127.0.0.1", port=broker.port, reconnect_min_s=0.05, reconnect_max_s=0.3)
        doc["mqtt"]["tls"]["ca_file"] = str(pki["ca"])
        ra = await start_agent(parse_config(doc, str(EXAMPLE)))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 15)
        await wait_for(lambda: ra.agent.outbox.depth == 0, 15)  # agent.started and the rest reached the broker
        assert ra.agent["mqtt"].uplink.last_error is None
    finally:
        broker.stop()
