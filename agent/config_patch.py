"""RFC 7396 JSON merge patches, as `config/patch` carries them against the running config.

    merge_patch(target, patch)   the patched document (neither argument is changed)
    null_paths(patch)            the key paths a patch deletes with null ("ble", "wifi.portal")

A merge patch is an object whose keys replace the target's; a nested object
is merged recursively, `null` deletes the key, and anything else (arrays
included) replaces the target's value whole. https://www.rfc-editor.org/rfc/rfc7396
"""

from __future__ import annotations

from typing import Any

__all__ = ["merge_patch", "null_paths"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2, MergePatch(Target, Patch), without mutating either argument."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def null_paths(patch: Any, prefix: str = "") -> list[str]:
    """Where a patch deletes: the dotted path of every null it holds in a nested object."""
    if not isinstance(patch, dict):
        return []
    out: list[str] = []
    for key, value in patch.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if value is None:
            out.append(path)
        else:
            out += null_paths(value, path)
    return out
