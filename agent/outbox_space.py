"""The room the outbox keeps on a disk that may fill: a spare file released on a full disk, and the cap the
disk then imposes until the file system has room again (agent/outbox_db.py says how max_bytes is shared)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from agent.outbox_db import Layout

__all__ = ["Space"]

log = logging.getLogger(__name__)

# How often (seconds) the writer looks at the file system's free space to rebuild the spare file.
_SPACE_CHECK_S = 2.0


class Space:
    """The spare file and the cap a full disk imposes; lives on the writer thread.

    The spare file is the layout's share, or a sixteenth of a small file system, whichever is smaller.
    """

    def __init__(self, db: Path, layout: Layout) -> None:
        self.reserve_path = Path(f"{db}.reserve")
        self.layout = layout
        self.reserve_size = layout.reserve
        self.full_budget: int | None = None  # used-page budget while the disk is full, else None
        self.last_full_error: str | None = None
        self._checked = 0.0

    @property
    def disk_full(self) -> bool:
        """Held by the disk and without room for the spare file: new events only replace old ones."""
        return self.full_budget is not None and not self.has_reserve()

    @property
    def disk_limited(self) -> bool:
        """The disk cannot hold the configured cap: the outbox holds what fits, its spare file rebuilt."""
        return self.full_budget is not None

    def free_bytes(self) -> int:
        st = os.statvfs(self.reserve_path.parent)
        return st.f_bavail * st.f_frsize

    def size_for(self, directory: Path) -> None:
        st = os.statvfs(directory)
        self.reserve_size = max(64 * 1024, min(self.layout.reserve, st.f_blocks * st.f_frsize // 16))

    @property
    def commit_bytes(self) -> int:
        """Event JSON per transaction at most: its new pages fit what the spare file gives back."""
        return max(4096, min(self.layout.commit_bytes, self.reserve_size // 4))

    def has_reserve(self) -> bool:
        return self.reserve_path.exists()

    def ensure_reserve(self) -> bool:
        """Build the spare file when the disk has room for it and a margin; True when it is there."""
        if self.has_reserve():
            return True
        size = self.reserve_size
        if self.free_bytes() < 3 * size:
            return False
        tmp = self.reserve_path.with_suffix(".reserve-new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)  # real blocks, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("outbox: cannot reserve %d bytes of spare room: %s", size, exc.strerror or exc)
            return False
        return True

    def release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        log.warning("outbox: disk full, spare room (%d bytes) released", self.reserve_size)
        return True

    def maybe_recover(self, now: float, used: int) -> None:
        """After a full disk: the cap a full disk set grows with the room the file system gives back, and is
        lifted once the configured one fits again; the spare file is rebuilt first."""
        if now - self._checked < _SPACE_CHECK_S or (self.full_budget is None and self.has_reserve()):
            return
        self._checked = now
        if not self.ensure_reserve() or self.full_budget is None:
            return
        room = used + self.free_bytes() - 3 * self.reserve_size  # the spare file, the WAL, a margin
        if room >= self.layout.table_budget:
            log.warning("outbox: the disk has room again; the outbox is back to its configured cap")
            self.full_budget = None
            self.last_full_error = None
        elif room > self.full_budget:
            self.full_budget = room
