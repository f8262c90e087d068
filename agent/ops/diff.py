"""Key-path differences between two config views (pure), for `ops push --dry-run`.

    ~ rfid.gone_after_s: 3.0 -> 2.0
    + rfid.readers[1]: {"id": "door", "port": "/dev/ttyUSB1", …}
    - ble: {"source": "hci0", …}

Secrets are masked on both sides ("***" or pydantic's "**********"), so a
masked value is never reported as a change: `diff` counts them instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "diff", "masked_secrets", "render_changes"]

# A changed value longer than this is cut in the listing: the path says where to look.
VALUE_WIDTH = 80


@dataclass(frozen=True, slots=True)
class Change:
    op: str  # "+" added, "-" removed, "~" changed
    path: str
    old: Any = None
    new: Any = None


def _masked(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 3 and set(value) == {"*"}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def diff(old: Any, new: Any, path: str = "") -> tuple[list[Change], int]:
    """(changes from old to new, number of masked secrets not compared)."""
    if _masked(old) or _masked(new):
        return [], 1
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str | int] = sorted(old.keys() | new.keys())
        pairs = [(k, old.get(k, _MISSING), new.get(k, _MISSING)) for k in keys]
    elif isinstance(old, list) and isinstance(new, list):
        pairs = [(i, old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING)
                 for i in range(max(len(old), len(new)))]
    else:
        return ([Change("~", path, old, new)] if old != new else []), 0
    changes: list[Change] = []
    secrets = 0
    for key, a, b in pairs:
        where = _join(path, key)
        if a is _MISSING:
            changes.append(Change("+", where, new=b))
        elif b is _MISSING:
            changes.append(Change("-", where, old=a))
        else:
            more, hidden = diff(a, b, where)
            changes += more
            secrets += hidden
    return changes, secrets


def masked_secrets(value: Any) -> int:
    """How many masked secrets a document holds."""
    return diff(value, value)[1]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def render_changes(changes: list[Change]) -> list[str]:
    out = []
    for c in changes:
        if c.op == "~":
            out.append(f"~ {c.path}: {_show(c.old)} -> {_show(c.new)}")
        elif c.op == "+":
            out.append(f"+ {c.path}: {_show(c.new)}")
        else:
            out.append(f"- {c.path}: {_show(c.old)}")
    return out
