"""The store's time zone, from the IANA database (zoneinfo; the tzdata package where the OS has none)."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["zone_info"]


@functools.lru_cache(maxsize=16)
def zone_info(name: str | None) -> ZoneInfo:
    """`name` ("Europe/Paris"), or the system's zone for None; ValueError for a name the database lacks."""
    if name is None:
        return _system_zone()
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"not an IANA time zone name: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)") from exc


def _system_zone() -> ZoneInfo:
    """/etc/localtime's zone by its IANA name (via the symlink or /etc/timezone); UTC when it cannot be told."""
    import os
    from pathlib import Path

    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        return ZoneInfo(Path("/etc/timezone").read_text().strip())
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
