"""Start-up failures: one sentence each, and an exit code that says which (README "Exit codes").

    0   stopped cleanly (SIGTERM, SIGINT)
    1   an unexpected error: a bug; the traceback is logged
    2   bad command line
    69  EX_UNAVAILABLE  an HTTP address cannot be listened on (port in use, address not on this machine,
                        a port below 1024 without the capability)
    73  EX_CANTCREAT    the storage directory or the outbox cannot be created or written
    75  EX_TEMPFAIL     another o2o-edge is running on the same storage directory (agent/instance_lock.py)
    78  EX_CONFIG       the config file is invalid (`check-config` exits 78 too), or a file it names (TLS
                        certificate, key or CA) cannot be used; systemd does not restart it
                        (RestartPreventExitStatus=78): restarting cannot fix a config

The numbers are BSD sysexits(3), as systemd's documentation suggests: a
supervisor can tell "fix the config" (78) from "try again later" (69, 75).
`preflight` checks what can be checked before anything starts; the HTTP
listeners report theirs when they bind (`cannot_listen`).
"""

from __future__ import annotations

import errno
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.errors import O2OEdgeError

__all__ = [
    "EXIT_CANTCREAT", "EXIT_CONFIG", "EXIT_ERROR", "EXIT_LOCKED", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE",
    "StartupError", "cannot_listen", "preflight", "server_tls", "storage_directory", "tls_problems",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_CANTCREAT = 73
EXIT_LOCKED = 75
EXIT_CONFIG = 78


class StartupError(O2OEdgeError):
    """The daemon cannot start; `str()` is one sentence for the log, `exit_code` one of the EXIT_ codes."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def server_tls(cert: Path, key: Path, where: str) -> ssl.SSLContext:
    """An HTTPS server context from a certificate and key; StartupError (78) naming the files if unusable."""
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(EXIT_CONFIG, f"cannot use the TLS certificate {cert} and key {key} of {where}: "
                                        f"{_reason(exc)}") from exc
    return context


def cannot_listen(listen: str, exc: OSError) -> StartupError:
    """The one sentence for a listener that cannot bind."""
    hint = {
        errno.EADDRINUSE: "the address is in use (another program, or another o2o-edge, listens there)",
        errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
        errno.EACCES: "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)",
    }.get(exc.errno or 0, _reason(exc))
    return StartupError(EXIT_UNAVAILABLE, f"cannot listen on {listen}: {hint}")


def storage_directory(directory: Path) -> None:
    """Create the storage directory if needed and prove it takes files; StartupError (73) if not."""
    try:
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise StartupError(EXIT_CANTCREAT, f"cannot write the storage directory {directory}: {_reason(exc)}") from exc


def _mqtt_tls(config: Config) -> None:
    tls = config.mqtt.tls
    if tls is None or not config.mqtt.enabled:
        return
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(f) for f in (tls.ca_file, tls.cert_file, tls.key_file) if f is not None)
        raise StartupError(EXIT_CONFIG, f"cannot use the [mqtt.tls] files ({files}): {_reason(exc)}") from exc


def tls_problems(config: Config) -> Iterator[tuple[str, StartupError]]:
    """Each TLS file set of the config that cannot be used, with its key path: `run` refuses the first (78),
    check-config warns about each."""
    portal = config.wifi.portal
    pairs = [("http.tls_cert", config.http.tls_cert, config.http.tls_key, "[http]")]
    if portal is not None:
        pairs.append(("wifi.portal.tls_cert", portal.tls_cert, portal.tls_key, "[wifi.portal]"))
    for path, cert, key, where in pairs:
        if cert is not None and key is not None:
            try:
                server_tls(cert, key, where)
            except StartupError as exc:
                yield path, exc
    try:
        _mqtt_tls(config)
    except StartupError as exc:
        yield "mqtt.tls", exc


def preflight(config: Config) -> None:
    """What can fail before anything starts: the storage directory, the TLS files. StartupError on the first."""
    storage_directory(config.storage.path.parent)
    for _, problem in tls_problems(config):
        raise problem
