"""What systemd does for systemd/o2o-edge-ndsctl.socket (Accept=yes), in a thread: listen on a unix socket and,
for each connection, start the helper with the accepted connection as its stdin and stdout."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HELPER = [sys.executable, "-I", "-B", "-m", "drivers.wifi.ndsctl_helper"]


def fake_ndsctl_binary(directory: Path, state: Path) -> Path:
    """fake_ndsctl.py as an executable that needs no environment (the helper runs ndsctl with a clean one)."""
    from tests.drivers.wifi import fake_ndsctl

    path = directory / "ndsctl"
    path.write_text(f'#!/bin/sh\nFAKE_NDSCTL_STATE="{state}" exec {sys.executable} {Path(fake_ndsctl.__file__)} "$@"\n')
    path.chmod(0o755)
    return path


class HelperSocket:
    """A listening unix socket that runs `argv` once per connection, as systemd's Accept=yes does."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 mode: int = 0o660) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self._dir = Path(tempfile.mkdtemp(prefix="nds", dir="/tmp"))  # sun_path holds 107 bytes: stay short
        self.path = self._dir / "ndsctl.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, mode)
        self._listener.listen(8)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stderr = self._dir / "journal.log"  # StandardError=journal
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix:{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn, open(self.stderr, "ab") as journal:
                self.procs.append(subprocess.Popen(self.argv, stdin=conn.fileno(), stdout=conn.fileno(),
                                                   stderr=journal, env=self.env, cwd=self.cwd))

    def journal(self) -> str:
        for proc in list(self.procs):
            proc.wait(30)
        return self.stderr.read_text() if self.stderr.exists() else ""

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)
