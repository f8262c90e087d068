"""One daemon per storage directory: an exclusive lock that names its holder.

Two daemons on one outbox would both write it, both drive the same serial
readers and both claim the same HTTP port. `o2o-edge run` takes an flock(2)
on `{storage dir}/o2o-edge.lock` before it touches anything else and writes
its pid there; a second one exits at once with one line naming that pid.
The kernel drops the lock when its holder dies, even by SIGKILL, so a stale
file never blocks a restart.

`python -m agent.instance_lock DIR` asks the same question without starting
anything (scripts/demo uses it): exit 0 when the directory is free, else the
one line and EXIT_LOCKED.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path
from types import TracebackType

from agent.startup import EXIT_CANTCREAT, EXIT_LOCKED, StartupError, storage_directory

__all__ = ["LOCK_FILE", "InstanceLock", "holder"]

LOCK_FILE = "o2o-edge.lock"


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _locked_error(directory: Path) -> StartupError:
    pid = _pid_in(directory / LOCK_FILE)
    who = f"pid {pid}" if pid is not None else "pid unknown"
    return StartupError(EXIT_LOCKED, f"another o2o-edge ({who}) is already running on {directory}: "
                                     f"stop it first (lock {directory / LOCK_FILE})")


class InstanceLock:
    """`with InstanceLock(dir):` holds the directory for this process; StartupError when it cannot."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> None:
        path = self.directory / LOCK_FILE
        storage_directory(self.directory)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(EXIT_CANTCREAT, f"cannot write the storage directory {self.directory}: "
                                               f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _locked_error(self.directory) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Emptied first, so a reader racing the unlock never names a pid that has gone.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def holder(directory: Path) -> int | None:
    """The pid holding `directory`, 0 when the holder's pid is unknown, None when it is free."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(directory / LOCK_FILE) or 0
    finally:
        os.close(fd)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agent.instance_lock STORAGE_DIR\n")
        return 2
    directory = Path(argv[0]).resolve()
    if holder(directory) is None:
        return 0
    sys.stderr.write(f"o2o-edge: cannot start: {_locked_error(directory)}\n")
    return EXIT_LOCKED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
