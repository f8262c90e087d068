"""The daemon's configuration: one pydantic schema for the TOML file and MQTT pushes.

Every section and key of the contract in DESIGN.md is here with its meaning.
Unknown keys are errors (a typo must not silently fall back to a default),
and `load_config` reports *every* problem with its key path, which is what
`o2o-edge check-config` prints.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent.errors import ConfigError, ConfigProblem

__all__ = [
    "BAUDRATES",
    "PROTOCOLS",
    "Config",
    "ReaderConfig",
    "cross_check",
    "format_loc",
    "load_config",
    "parse_config",
]

# The reader families we support; a new family is a new id and a new codec module.
PROTOCOLS = ("uhfreader18", "mercury", "r2000", "em4100")
# Rates the supported readers offer; anything else is a typo that would read garbage.
BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
# Ids end up in MQTT topics and URLs: keep them to a safe alphabet.
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=_ID)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Section):
    id: Ident
    gateway: Ident
    name: str = ""


class StorageConfig(_Section):
    path: Path = Path("/var/lib/o2o-edge/o2o-edge.db")
    # "full" survives a power cut at the cost of one fsync per group commit;
    # "normal" survives a crash or kill -9 but may lose the last commits on power loss.
    synchronous: Literal["full", "normal"] = "full"


class UserConfig(_Section):
    """A staff login for the status page. Make the hash with `o2o-edge hash-password`."""

    name: Ident
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
    role: Literal["staff", "admin"] = "staff"  # staff: read-only; admin: actions too


class HttpConfig(_Section):
    listen: str = "127.0.0.1:8080"
    api_token: SecretStr | None = None
    users: list[UserConfig] = Field(default_factory=list)
    # HTTPS: both or neither. The session cookie is Secure when set.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise PydanticCustomError("tls", "tls_cert and tls_key go together", {})
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value


class MqttTls(_Section):
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None
    # Hostname check and chain verification are always on; there is no switch to turn them off.


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    enabled: bool = True
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None  # default: o2o-edge-{store}-{gateway}
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    tls: MqttTls | None = None
    # Uplink batching: events per `events` message and its payload size (before compression).
    batch_max_events: int = Field(default=1000, ge=1, le=100_000)
    batch_max_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # `events` messages published but not yet acknowledged.
    inflight: int = Field(default=16, ge=1, le=1000)
    compression: Literal["none", "zlib", "zstd"] = "none"
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    # Ed25519 public key (base64 of the 32 raw bytes) that signs config pushes; when set, unsigned pushes are refused.
    config_public_key: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttConfig:
        if self.tls is not None and (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise PydanticCustomError("tls", "tls.cert_file and tls.key_file go together", {})
        return self


class OutboxConfig(_Section):
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)
    # Events waiting for the writer; beyond it the hub counts drops.
    queue_size: int = Field(default=100_000, ge=1000, le=10_000_000)
    # Rows per group commit; larger batches amortise the fsync.
    commit_max: int = Field(default=10_000, ge=1, le=1_000_000)


class SimulatorConfig(_Section):
    """A simulated reader for `o2o-edge run --demo`: ignored otherwise."""

    scenario: Literal["shopfloor", "checkout", "idle"] = "shopfloor"
    tags: int = Field(default=12, ge=0, le=10_000)
    period_s: float = Field(default=0.2, gt=0, le=10)


class ReaderConfig(_Section):
    id: Ident
    port: str = Field(min_length=1)
    protocol: str
    baudrate: int = 57600
    zones: dict[int, Ident] = Field(default_factory=dict)
    address: int = Field(default=0, ge=0, le=255, description="bus address (uhfreader18 Adr byte)")
    mode: Literal["auto", "active", "polled"] = "auto"
    # UHF regulatory region, for readers that must be told (mercury, r2000); None keeps the reader's own.
    region: Literal["eu3", "eu", "na", "na2", "in", "jp", "kr2", "prc", "au", "nz"] | None = None
    poll_interval_s: float = Field(default=0.2, gt=0, le=60)
    # No frame for this long while online: the reader is considered gone.
    silence_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    simulator: SimulatorConfig | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise PydanticCustomError(
                "protocol", "must be one of {choices}", {"choices": ", ".join(PROTOCOLS)}
            )
        return value

    @field_validator("baudrate")
    @classmethod
    def _baudrate(cls, value: int) -> int:
        if value not in BAUDRATES:
            raise PydanticCustomError(
                "baudrate", "must be one of {choices}", {"choices": ", ".join(map(str, BAUDRATES))}
            )
        return value

    @field_validator("zones")
    @classmethod
    def _antennas(cls, value: dict[int, str]) -> dict[int, str]:
        bad = [a for a in value if not 1 <= a <= 64]
        if bad:
            raise PydanticCustomError("antenna", "antenna numbers run from 1 to 64, got {bad}", {"bad": bad})
        return value

    def zone_for(self, antenna: int) -> str:
        """The zone an antenna covers; an unmapped antenna is a zone of its own, never dropped."""
        if not self.zones:
            return self.id
        return self.zones.get(antenna) or f"{self.id}/ant{antenna}"


class RfidConfig(_Section):
    gone_after_s: float = Field(default=3.0, gt=0, le=3600)
    # Keep every raw read as a `tag.read` event (diagnostics; heavy): off by default.
    keep_raw_reads: bool = False
    readers: list[ReaderConfig] = Field(default_factory=list)


class StationConfig(_Section):
    id: Ident
    zones: list[Ident] = Field(min_length=1)
    token: SecretStr
    # A basket change is announced (basket.updated) once the basket has been still this long.
    settle_s: float = Field(default=0.5, ge=0, le=10)


class SerialAlarm(_Section):
    """A relay or siren on a serial/USB adapter: raise RTS or DTR for pulse_s, or write a command."""

    type: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: int = 9600
    line: Literal["rts", "dtr", "write"] = "rts"
    command: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{2})+$", description="hex bytes, line = write")
    pulse_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _command_for_write(self) -> SerialAlarm:
        if (self.line == "write") != (self.command is not None):
            raise PydanticCustomError("command", "command (hex bytes) goes with line = \"write\", and only with it", {})
        return self


class WebhookAlarm(_Section):
    """An HTTP POST of the alarm (JSON) to a device on the store network, e.g. the gate's controller."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^/\s]+(/\S*)?$")
    timeout_s: float = Field(default=2.0, gt=0, le=30)


AlarmAction = Annotated[SerialAlarm | WebhookAlarm, Field(discriminator="type")]


class GateConfig(_Section):
    id: Ident
    zones: list[Ident] = Field(min_length=1)
    alarm: list[AlarmAction] = Field(default_factory=list)
    # The same unpaid item alarms again only after this long (a tag flickering at the edge of the field).
    rearm_s: float = Field(default=10.0, ge=0, le=3600)


class CheckoutConfig(_Section):
    stations: list[StationConfig] = Field(default_factory=list)
    gates: list[GateConfig] = Field(default_factory=list)
    # How long an item stays in the sold ledger (paid here, or sold/add from the cloud).
    sold_ttl_days: float = Field(default=90, gt=0, le=3650)


class IBeaconId(_Section):
    uuid: str = Field(pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
    major: int = Field(ge=0, le=65535)
    minor: int = Field(ge=0, le=65535)


class EddystoneUid(_Section):
    namespace: str = Field(pattern=r"^[0-9a-fA-F]{20}$")
    instance: str = Field(pattern=r"^[0-9a-fA-F]{12}$")


class BeaconConfig(_Section):
    id: Ident
    ibeacon: IBeaconId | None = None
    eddystone_uid: EddystoneUid | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> BeaconConfig:
        if (self.ibeacon is None) == (self.eddystone_uid is None):
            raise PydanticCustomError("identity", "give exactly one of ibeacon or eddystone_uid", {})
        return self


class BleZoneConfig(_Section):
    """A zone as heard by this gateway's adapter: a beacon is in it while its smoothed RSSI is at least
    `rssi_enter`, and leaves it only below `rssi_exit` (the gap is the hysteresis that stops flapping)."""

    id: Ident
    rssi_enter: int = Field(ge=-127, le=20)
    rssi_exit: int = Field(ge=-127, le=20)

    @model_validator(mode="after")
    def _hysteresis(self) -> BleZoneConfig:
        if self.rssi_exit >= self.rssi_enter:
            raise PydanticCustomError("hysteresis", "rssi_exit must be below rssi_enter (hysteresis)", {})
        return self


class BleConfig(_Section):
    enabled: bool = True
    source: str = "hci0"  # an adapter, or "replay:PATH" (btsnoop or pcap; "replay:PATH?fast" for no delays)
    beacons: list[BeaconConfig] = Field(default_factory=list)
    # Innermost first is not required: a beacon is in the zone with the highest rssi_enter it satisfies.
    # None configured: one zone "near" (enter -75 dBm, leave below -85 dBm).
    zones: list[BleZoneConfig] = Field(default_factory=list)
    dwell_s: float = Field(default=30.0, gt=0, le=86400)  # beacon.dwell after this long in one zone
    away_s: float = Field(default=10.0, gt=0, le=3600)  # not heard this long: it left
    path_loss_exponent: float = Field(default=2.5, ge=1.5, le=5.0)  # distance estimate; 2 in free space
    low_battery_mv: int = Field(default=2500, ge=0, le=5000)  # Eddystone TLM below this: alert
    # Identifiers of people (the loyalty app's iBeacon UUID): resolved only with consent, else hashed.
    person_uuids: list[str] = Field(default_factory=list)
    opted_in: list[str] = Field(default_factory=list)  # "uuid:major:minor" of people who consented
    # Count unknown advertisers (always) and also keep them as events (off: privacy and volume).
    keep_unknown: bool = False


class PortalConfig(_Section):
    fas_secure_level: Literal[0, 1, 2, 3] = 1
    ndsctl: str = "/usr/bin/ndsctl"
    session_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    faskey: SecretStr | None = None  # openNDS's faskey: needed at level 3 (and to compute rhid at 1/2)
    upload_kbps: int = Field(default=0, ge=0)  # per-guest limits handed to ndsctl auth; 0 = openNDS defaults
    download_kbps: int = Field(default=0, ge=0)
    upload_quota_kb: int = Field(default=0, ge=0)
    download_quota_kb: int = Field(default=0, ge=0)
    # Hosts the success page may link back to (the page the guest first asked for); others are not offered.
    allowed_redirect_hosts: list[str] = Field(default_factory=list)
    logo: Path | None = None  # a PNG, JPEG or SVG shown on the portal (at most 256 KiB)

    @model_validator(mode="after")
    def _faskey_for_level3(self) -> PortalConfig:
        if self.fas_secure_level == 3 and self.faskey is None:
            raise PydanticCustomError("faskey", "fas_secure_level 3 needs the faskey openNDS was given", {})
        return self


class WifiZoneConfig(_Section):
    """A zone for Wi-Fi footfall: devices heard at least this loud count here (the strongest zone wins)."""

    id: Ident
    rssi_min: int = Field(ge=-127, le=20)


class PresenceConfig(_Section):
    source: str = "mon0"  # a monitor-mode interface, or "replay:PATH" (radiotap pcap; "?fast" for no delays)
    window_s: float = Field(default=60.0, ge=1, le=3600)  # one wifi.presence count per window
    zones: list[WifiZoneConfig] = Field(default_factory=list)  # none: one zone "store" for every device


class WifiConfig(_Section):
    portal: PortalConfig | None = None
    presence: PresenceConfig | None = None


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    """The whole daemon. `version` orders pushes from central ops (0 = local file only)."""

    version: int = Field(default=0, ge=0)
    store: StoreConfig
    storage: StorageConfig = Field(default_factory=StorageConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    rfid: RfidConfig = Field(default_factory=RfidConfig)
    checkout: CheckoutConfig = Field(default_factory=CheckoutConfig)
    ble: BleConfig | None = None
    wifi: WifiConfig = Field(default_factory=WifiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)



def _duplicates(prefix: str, ids: list[str]) -> list[ConfigProblem]:
    first: dict[str, int] = {}
    out = []
    for i, ident in enumerate(ids):
        if ident in first:
            out.append(ConfigProblem(f"{prefix}[{i}].id", f"duplicate id {ident!r} (also {prefix}[{first[ident]}])"))
        else:
            first[ident] = i
    return out


def cross_check(config: Config) -> list[ConfigProblem]:
    """Rules that span sections (unique ids, zones that exist), each reported at its own key path."""
    problems = _duplicates("rfid.readers", [r.id for r in config.rfid.readers])
    known = {r.zone_for(a) for r in config.rfid.readers for a in (r.zones or {1: r.id})}
    groups: list[tuple[str, Sequence[StationConfig | GateConfig]]] = [
        ("stations", config.checkout.stations), ("gates", config.checkout.gates)]
    for kind, items in groups:
        problems += _duplicates(f"checkout.{kind}", [i.id for i in items])
        for i, item in enumerate(items):
            for j, zone in enumerate(item.zones):
                if zone not in known:
                    problems.append(ConfigProblem(
                        f"checkout.{kind}[{i}].zones[{j}]",
                        f"no reader covers zone {zone!r} (known zones: {', '.join(sorted(known)) or 'none'})",
                    ))
    if config.ble is not None:
        problems += _duplicates("ble.beacons", [b.id for b in config.ble.beacons])
    return problems


def split_host_port(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080' or '[::1]:8080' -> (host, port); raises ValueError with a readable message."""
    m = re.fullmatch(r"\[(?P<v6>[0-9a-fA-F:.]+)\]:(?P<p1>\d+)|(?P<host>[^:\[\]]+):(?P<p2>\d+)", value)
    if not m:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = m["v6"] or m["host"]
    port = int(m["p1"] or m["p2"])
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    if m["v6"]:
        ipaddress.IPv6Address(host)
    return host, port


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('rfid', 'readers', 1, 'baudrate') -> 'rfid.readers[1].baudrate'."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself is bad"
            continue
        if isinstance(part, int) or (out and (part.isdigit() or out.endswith(".zones"))):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key (check the spelling; see config/example.toml)",
}


def _problem(err: Any) -> ConfigProblem:
    # Validators on a model report at the model's own path; function-after wrappers add no loc.
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = _MESSAGES.get(err["type"]) or err["msg"]
    if err["type"] == "string_pattern_mismatch" and err["ctx"].get("pattern") == _ID:
        msg = "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    elif err["type"] == "literal_error":
        msg = "must be one of " + err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
    elif err["type"] == "value_error":
        msg = str(err["ctx"].get("error", msg))
    return ConfigProblem(format_loc(loc), msg[0].lower() + msg[1:] if msg else msg)


def parse_config(document: dict[str, Any], source: str = "config") -> Config:
    """Validate a whole document (TOML file or MQTT push); raise ConfigError with every problem."""
    try:
        config = Config.model_validate(document)
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()], source) from exc
    problems = cross_check(config)
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {path}: {exc.strerror}")], str(path)) from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"not UTF-8 text: {exc}")], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"TOML syntax error: {exc}")], str(path)) from exc
    config = parse_config(document, str(path))
    if not config.storage.path.is_absolute():
        # A relative database path is relative to the config file, not to the daemon's cwd.
        storage = config.storage.model_copy(update={"path": (path.parent / config.storage.path).resolve()})
        config = config.model_copy(update={"storage": storage})
    return config
