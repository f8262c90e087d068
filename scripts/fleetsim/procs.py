"""Child processes that never outlive the run, and what /proc says about them.

Every child is started in a process group of its own (a new session), under `setpriv --pdeathsig KILL`
(the kernel kills it if this process dies, even by SIGKILL), and its group id is appended to
`{workdir}/pgids` so that scripts/fleet can kill whatever is left if Python itself is killed. `stop()`
sends SIGTERM to the whole group, then SIGKILL after a grace period. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Child", "EjabberdCluster", "Mosquitto", "cpu_seconds", "free_port", "pss_kb", "rss_kb", "tree_rss_kb"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if not alive():
                raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited") from None
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


# -- /proc -----------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), in seconds; 0 if it is gone."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK if f else 0.0


def rss_kb(pid: int) -> int:
    f = _stat(pid)
    return int(f[21]) * PAGE_KB if f else 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (Python, libraries) counted once across the daemons."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pids(pgids: set[int]) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat(int(entry.name))
            if f and int(f[2]) in pgids:
                pids.append(int(entry.name))
    return pids


def tree_rss_kb(pgids: set[int]) -> int:
    return sum(rss_kb(p) for p in group_pids(pgids))


# -- children --------------------------------------------------------------------------------------

@dataclass
class Child:
    """One command in its own process group, killed with its group."""

    name: str
    argv: list[str]
    workdir: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stdout: Any = None  # a path (the log file), subprocess.PIPE, or None (DEVNULL)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        out: Any = subprocess.DEVNULL
        if isinstance(self.stdout, Path):
            self._log = out = open(self.stdout, "ab")  # noqa: SIM115 (closed in stop())
        elif self.stdout is subprocess.PIPE:
            out = subprocess.PIPE
        argv = ["setpriv", "--pdeathsig", "KILL", "--", *self.argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env, cwd=self.cwd)
        with open(self.workdir / "pgids", "a") as f:
            f.write(f"{self.proc.pid}\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 8.0) -> int | None:
        """SIGTERM to the group, SIGKILL to what is left after `grace` seconds; the exit code."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.signal(signal.SIGTERM)
            try:
                code = self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                code = self.proc.wait(5)
        self.signal(signal.SIGKILL)  # anything the leader left behind in its group
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


class LineReader:
    """Reads a child's stdout on a thread; each line goes to `on_line(line, time.time())`."""

    def __init__(self, stream: IO[bytes], on_line: Callable[[str, float], None], keep: int = 200) -> None:
        self.tail: list[str] = []
        self._keep = keep
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            if len(self.tail) > self._keep:
                del self.tail[: self._keep // 2]
            self._on_line(line, time.time())


# -- brokers ---------------------------------------------------------------------------------------

class Broker:
    """What the scenario needs from a broker: endpoints, restart, its processes, connect times from its log."""

    kind = "broker"
    version = "?"
    shared_subscriptions = True  # MQTT 5 $share/{group}/{filter}

    def __init__(self) -> None:
        self.connects: list[tuple[float, str]] = []  # (time, client id) of every client connection, from its log
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def connects_since(self, since: float) -> list[tuple[float, str]]:
        with self._lock:
            return [c for c in self.connects if c[0] >= since]

    def _connected(self, t: float, client_id: str) -> None:
        with self._lock:
            self.connects.append((t, client_id))
            if len(self.connects) > 200_000:
                del self.connects[:100_000]


_MOSQ_CONNECT = re.compile(r"New client connected from \S+ as (\S+) \(")


class Mosquitto(Broker):
    """Debian's mosquitto on a free loopback port; its log on a pipe (line-buffered) times every connect."""

    kind = "mosquitto"

    def __init__(self, workdir: Path, *, conf_extra: str = "") -> None:
        super().__init__()
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: scripts/setup --system installs it (apt-get install mosquitto)")
        self.exe = exe
        self.workdir = workdir / "mosquitto"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            # retained desired state and birth/will survive the restart, as on a production broker
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 0\n"
            "sys_interval 1\n"
            "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\nlog_timestamp false\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            + conf_extra
        )
        self.child: Child | None = None
        self.reader: LineReader | None = None
        self.version = _dpkg_version("mosquitto")

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def pids(self) -> list[int]:
        return [self.child.pid] if self.child is not None and self.child.alive() else []

    def start(self) -> None:
        self.child = Child("mosquitto", ["stdbuf", "-oL", self.exe, "-c", str(self.conf)], self.workdir.parent,
                           stdout=subprocess.PIPE)
        self.child.start()
        assert self.child.proc is not None and self.child.proc.stdout is not None
        self.reader = LineReader(self.child.proc.stdout, self._line)
        wait_port(self.port, 10, self.child.alive)

    def _line(self, line: str, t: float) -> None:
        m = _MOSQ_CONNECT.search(line)
        if m:
            self._connected(t, m.group(1))

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


_EJ_CONNECT = re.compile(r"Opened MQTT session for [^@\s]+@[^/\s]+/(\S+) from")


@dataclass
class EjabberdNode:
    name: str
    node: str
    mqtt_port: int
    dir: Path
    child: Child | None = None
    reader: LineReader | None = None


class EjabberdCluster(Broker):
    """Debian's ejabberd (mod_mqtt, MQTT 5) as `nodes` nodes on loopback, joined with `ejabberdctl join_cluster`.

    Each node has its own node name (`fleetN-{run}@localhost`), MQTT port, spool and log directory and
    ejabberdctl config; they share one Erlang cookie made for this run (nodes only cluster with the same
    cookie), a private epmd on a free loopback port (ERL_EPMD_PORT, never the system's 4369) and
    distribution bound to 127.0.0.1. ejabberdctl runs as the current user (EXEC_CMD in its config), so the
    nodes are children of this run. MQTT clients must give a username (any password: anonymous auth).
    """

    kind = "ejabberd"
    shared_subscriptions = False  # mod_mqtt 23.01 answers a $share/… SUBSCRIBE with DISCONNECT 0x9E

    def __init__(self, workdir: Path, nodes: int = 2) -> None:
        super().__init__()
        if shutil.which("ejabberdctl") is None:
            raise RuntimeError("ejabberd is not installed (apt-get install -y ejabberd)")
        self.workdir = workdir / "ejabberd"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = secrets.token_hex(3)
        self.cookie = secrets.token_hex(16)
        self.epmd_port = free_port()
        self.env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
                    "HOME": str(self.workdir)}
        self.epmd: Child | None = None
        self.nodes = [self._node(i + 1) for i in range(nodes)]
        self.cluster_error: str | None = None
        self.joined = False
        self.version = _dpkg_version("ejabberd")

    def _node(self, n: int) -> EjabberdNode:
        d = self.workdir / f"node{n}"
        (d / "spool").mkdir(parents=True, exist_ok=True)
        (d / "logs").mkdir(parents=True, exist_ok=True)
        node = EjabberdNode(f"node{n}", f"fleet{n}-{self.run_id}@localhost", free_port(), d)
        (d / "ejabberd.yml").write_text(f"""\
hosts:
  - "fleet.localhost"
loglevel: info
# MQTT clients give a username (the gateway's "{{store}}.{{gateway}}"), any password
auth_method: [anonymous]
anonymous_protocol: login_anon
listen:
  -
    port: {node.mqtt_port}
    ip: "127.0.0.1"
    module: mod_mqtt
    backlog: 1024
modules:
  mod_mqtt:
    access_publish: {{}}
    access_subscribe: {{}}
""")
        ctl = d / "ejabberdctl.cfg"
        ctl.write_text(
            "EXEC_CMD=as_current_user\n"
            f"ERLANG_NODE={node.node}\n"
            f'ERL_OPTIONS="-start_epmd false -setcookie {self.cookie} -kernel inet_dist_use_interface {{127,0,0,1}}"\n'
            f"EJABBERD_PID_PATH={d}/ejabberd.pid\n"
        )
        ctl.chmod(0o600)
        return node

    def _ctl(self, node: EjabberdNode, *args: str) -> list[str]:
        return ["ejabberdctl", "--config", str(node.dir / "ejabberd.yml"), "--ctl-config",
                str(node.dir / "ejabberdctl.cfg"), "--spool", str(node.dir / "spool"), "--logs",
                str(node.dir / "logs"), *args]

    def ctl(self, node: EjabberdNode, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._ctl(node, *args), capture_output=True, text=True, env=self.env,
                              cwd=node.dir / "spool", timeout=timeout)

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        live = self.nodes if self.joined else self.nodes[:1]
        return [("127.0.0.1", n.mqtt_port) for n in live]

    def pids(self) -> list[int]:
        pgids = {n.child.pid for n in self.nodes if n.child is not None and n.child.alive()}
        return group_pids(pgids)

    def start(self) -> None:
        if self.epmd is None:
            self.epmd = Child("epmd", ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"], self.workdir.parent,
                              env=self.env, stdout=self.workdir / "epmd.log")
            self.epmd.start()
            wait_port(self.epmd_port, 10, self.epmd.alive)
        if self.nodes[0].child is None:
            self._start_node(self.nodes[0])

    def _start_node(self, node: EjabberdNode) -> None:
        node.child = Child(node.name, self._ctl(node, "foreground"), self.workdir.parent, env=self.env,
                           cwd=node.dir / "spool", stdout=subprocess.PIPE)
        node.child.start()
        assert node.child.proc is not None and node.child.proc.stdout is not None
        node.reader = LineReader(node.child.proc.stdout, self._line)
        wait_port(node.mqtt_port, 60, node.child.alive)

    def form_cluster(self) -> bool:
        """Start the other nodes and join each to the first; False (and `cluster_error`) if any step fails."""
        first = self.nodes[0]
        for node in self.nodes[1:]:
            try:
                self._start_node(node)
            except RuntimeError as exc:
                tail = "\n".join(node.reader.tail[-5:]) if node.reader else ""
                self.cluster_error = f"{node.node} did not start: {exc}\n{tail}"
                return False
            done = self.ctl(node, "join_cluster", first.node)
            if done.returncode != 0:
                self.cluster_error = (f"`ejabberdctl join_cluster {first.node}` on {node.node} exited "
                                      f"{done.returncode}: {(done.stdout + done.stderr).strip()}")
                return False
        listed = self.ctl(first, "list_cluster")
        members = self._members(listed.stdout)
        missing = [n.node for n in self.nodes if n.node not in members]
        if listed.returncode != 0 or missing:
            self.cluster_error = (f"`ejabberdctl list_cluster` on {first.node} exited {listed.returncode} and "
                                  f"lists {members or 'nothing'}: {', '.join(missing)} missing")
            return False
        # join_cluster restarts ejabberd on the joining node: wait for its listener again
        for node in self.nodes[1:]:
            wait_port(node.mqtt_port, 60, node.child.alive if node.child else lambda: False)
        self.joined = True
        return True

    def list_cluster(self) -> list[str]:
        return self._members(self.ctl(self.nodes[0], "list_cluster").stdout)

    @staticmethod
    def _members(text: str) -> list[str]:
        """ejabberdctl list_cluster prints one node a line, quoted as an Erlang atom when it has a '-'."""
        return [line.strip().strip("'") for line in text.splitlines() if line.strip()]

    def _line(self, line: str, t: float) -> None:
        m = _EJ_CONNECT.search(line)
        if m:
            self._connected(t, m.group(1))

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.child is not None:
                # `ejabberdctl stop`: the node stops, so `ejabberdctl foreground` (our child) reaps it and exits
                if node.child.alive():
                    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                        self.ctl(node, "stop", timeout=30)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        assert node.child.proc is not None
                        node.child.proc.wait(30)
                node.child.stop(grace=15)
                node.child = None
        if self.epmd is not None:
            self.epmd.stop()
            self.epmd = None


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "?"
