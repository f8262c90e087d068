"""What a config push would take away from the running config, named so that ops can confirm it.

A removal is named by its key path: a section (`"ble"`, `"wifi.portal"`,
`"outbox"` when a push leaves out a section whose settings differ from the
defaults) or an item of a list of things with ids (`"rfid.readers[checkout-2]"`,
`"checkout.stations[sco-1]"`, `"checkout.gates[exit-1]"`, `"ble.beacons[entrance]"`).
A push confirms removals in its `"remove"` list; a name there confirms itself
and everything below it (`"rfid.readers"` confirms every reader).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any, get_args, get_origin

from pydantic import BaseModel

__all__ = ["REMOVAL_NAME", "confirmed", "removals"]

# "rfid.readers[checkout-2]", "wifi.portal", "outbox": dotted keys, optionally one [id] (the ID_PATTERN alphabet).
REMOVAL_NAME = re.compile(r"^[a-z_]+(\.[a-z_]+)*(\[[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\])?$")


def _id_list(model: type[BaseModel], name: str) -> bool:
    """Whether the field holds a list of things with ids (readers, stations, gates, beacons, zones)."""
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) is not list:
        return False
    (item,) = get_args(annotation)
    return isinstance(item, type) and issubclass(item, BaseModel) and "id" in item.model_fields


def _settings(model: BaseModel) -> dict[str, Any]:
    """A section's own values: not its sub-sections, not its lists of things with ids (both are walked)."""
    return {name: value for name in type(model).model_fields
            if not isinstance(value := getattr(model, name), BaseModel) and not _id_list(type(model), name)}


def removals(old: BaseModel, new: BaseModel | None, *, omitted: Collection[str] = (), path: str = "") -> list[str]:
    """Every section and id'd item of `old` that `new` no longer has. `omitted`: the top-level keys the
    pushed document left out (below the top level, a model's own `model_fields_set` says it)."""
    out: list[str] = []
    for name in type(old).model_fields:
        before = getattr(old, name)
        after = getattr(new, name) if new is not None else None
        key = f"{path}.{name}" if path else name
        if isinstance(before, BaseModel):
            if not isinstance(after, BaseModel):
                out.append(key)
                out += removals(before, None, path=key)
                continue
            left_out = name in omitted if not path else new is not None and name not in new.model_fields_set
            if left_out and _settings(before) != _settings(after):
                out.append(key)
            out += removals(before, after, path=key)
        elif _id_list(type(old), name):
            kept = {getattr(v, "id", None) for v in (after if isinstance(after, list) else [])}
            out += [f"{key}[{v.id}]" for v in before if v.id not in kept]
    return out


def confirmed(removal: str, names: Iterable[str]) -> bool:
    """Whether one of `names` confirms `removal` (itself, or a section or list above it)."""
    return any(removal == n or removal.startswith((f"{n}.", f"{n}[")) for n in names)
