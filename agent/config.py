"""The daemon's configuration: one pydantic schema for the TOML file and MQTT pushes.

Every section and key of the contract in DESIGN.md is here with its meaning (the
shop floor's sections live in agent/config_sections.py and are re-exported).
Unknown keys are errors (a typo must not silently fall back to a default),
and `load_config` reports *every* problem with its key path, which is what
`o2o-edge check-config` prints.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.config_sections import (
    BAUDRATES,
    ID_PATTERN,
    MAX_VERSION,
    PROTOCOLS,
    AlarmAction,
    BeaconConfig,
    BleConfig,
    BleZoneConfig,
    CheckoutConfig,
    EddystoneUid,
    GateConfig,
    HostPort,
    IBeaconId,
    Ident,
    PortalConfig,
    PresenceConfig,
    ReaderConfig,
    RfidConfig,
    Section,
    SerialAlarm,
    SimulatorConfig,
    StationConfig,
    WebhookAlarm,
    WifiConfig,
    WifiZoneConfig,
    split_host_port,
)
from agent.errors import ConfigError, ConfigProblem
from agent.timezones import zone_info

__all__ = [
    "BAUDRATES", "PROTOCOLS", "AlarmAction", "BeaconConfig", "BleConfig", "BleZoneConfig", "CheckoutConfig", "Config",
    "EddystoneUid", "GateConfig", "HttpConfig", "IBeaconId", "Ident", "MqttConfig", "PortalConfig", "PresenceConfig",
    "ReaderConfig", "RfidConfig", "SerialAlarm", "SimulatorConfig", "StationConfig", "WebhookAlarm", "WifiConfig",
    "WifiZoneConfig", "cross_check", "format_loc", "load_config", "parse_config", "split_host_port",
]


class StoreConfig(Section):
    id: Ident
    gateway: Ident
    name: str = ""
    # IANA time zone ("Europe/Paris"): schedules and daily rollups use it. None: the system's.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None:
            zone_info(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The store's time zone (the system's when none is configured)."""
        return zone_info(self.timezone)


class StorageConfig(Section):
    path: Path = Path("/var/lib/o2o-edge/o2o-edge.db")
    # "full" survives a power cut at the cost of one fsync per group commit;
    # "normal" survives a crash or kill -9 but may lose the last commits on power loss;
    # "by-class": "full" for commits with a sale, an alarm or an operational event, "normal" for telemetry
    # alone (docs/durability.md has the measured trade-off).
    synchronous: Literal["full", "normal", "by-class"] = "by-class"


class UserConfig(Section):
    """A staff login for the status page. Make the hash with `o2o-edge hash-password`."""

    name: Ident
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
    role: Literal["staff", "admin"] = "staff"  # staff: read-only; admin: actions too


class HttpConfig(Section):
    listen: HostPort = "127.0.0.1:8080"
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


class MqttTls(Section):
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None
    # Hostname check and chain verification are always on; there is no switch to turn them off.


class MqttConfig(Section):
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
    # After an outage, events younger than this and every business event go out ahead of the backlog,
    # which follows marked "backlog": true (docs/cloud-contract.md); 0 sends everything oldest first.
    live_age_s: float = Field(default=5.0, ge=0, le=3600)
    # Live events wait this long after the previous live batch, so a trickle shares one message.
    linger_ms: int = Field(default=50, ge=0, le=5000)
    # Plain JSON unless configured (the cloud contract, ../shared/DESIGN.md); zstd is about a tenth of the size
    # (1M presence events took 34 min at 1 Mbit/s as plain JSON): docs/cloud-contract.md.
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


class OutboxConfig(Section):
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)
    # Events waiting for the writer; beyond it the hub counts drops.
    queue_size: int = Field(default=100_000, ge=1000, le=10_000_000)
    # Rows per group commit; larger batches amortise the fsync.
    commit_max: int = Field(default=10_000, ge=1, le=1_000_000)
    # Telemetry alone waits this long for company before it is committed (a sale, an alarm, any other event is
    # committed at once, with everything queued): fewer transactions, less SD card wear (docs/durability.md).
    commit_linger_ms: int = Field(default=500, ge=0, le=5000)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


# What a zone is for, as stock sees it (agent/o2o/stock.py): where items wait for shoppers, in reserve,
# being tried on, being paid for, leaving.
StockRole = Literal["floor", "stockroom", "fitting", "checkout", "exit"]


class StockConfig(Section):
    """In-store stock from RFID (agent/o2o/stock.py): counts per GTIN and zone of items present, not sold."""

    zones: dict[Ident, StockRole] = Field(min_length=1)  # RFID zone -> role; other zones are not stock
    # A tag stays present until its reader has been online this many rounds (of rfid.gone_after_s) without it.
    missing_rounds: int = Field(default=3, ge=1, le=1000)
    snapshot_s: float = Field(default=300.0, ge=1, le=86400)  # the retained `stock` topic is refreshed this often
    changed_every_s: float = Field(default=60.0, ge=0.1, le=86400)  # stock.changed events, coalesced per interval
    replenish_below: int = Field(default=1, ge=0, le=100_000)  # "replenish": floor count at or below this
    misplaced_after_s: float = Field(default=3600.0, gt=0, le=30 * 86400)  # unpaid in a fitting room this long
    max_epcs: int = Field(default=100_000, ge=100, le=2_000_000)  # tags tracked; beyond, new ones are counted


class SignageScreen(Section):
    """A screen in the store showing the zone's current offers to whoever stands there (nobody is named)."""

    id: Ident
    token: SecretStr  # the screen's page is /signage/{id}?token=…
    zones: list[Ident] = Field(min_length=1)


class OffersConfig(Section):
    """Proximity offers (agent/o2o/offers.py): campaigns arrive on campaigns/set; these are the store's limits."""

    max_per_visit: int = Field(default=3, ge=1, le=100)  # offers per person per visit, across campaigns
    visit_gap_s: float = Field(default=1800.0, gt=0, le=86400)  # not seen this long: the next time is a new visit
    signage: list[SignageScreen] = Field(default_factory=list)


class CollectConfig(Section):
    """Click-and-collect (agent/o2o/collect.py): orders arrive on collect/add."""

    stale_after_days: float = Field(default=3.0, gt=0, le=365)  # waiting longer than this: flagged for staff


class Config(Section):
    """The whole daemon. `version` orders pushes from central ops (0 = local file only)."""

    version: int = Field(default=0, ge=0, le=MAX_VERSION)
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
    offers: OffersConfig = Field(default_factory=OffersConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    stock: StockConfig | None = None



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
    if config.stock is not None:
        problems += [ConfigProblem(f"stock.zones[{zone}]", f"no reader covers zone {zone!r} (known zones: "
                                   f"{', '.join(sorted(known)) or 'none'})")
                     for zone in config.stock.zones if zone not in known]
    return problems


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


def _numeric_string(value: Any) -> bool:
    """"115200", "3.5": a number written as a string (strict numbers refuse it; say how to fix it)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _problem(err: Any) -> ConfigProblem:
    # Validators on a model report at the model's own path; function-after wrappers add no loc.
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = _MESSAGES.get(err["type"]) or err["msg"]
    if err["type"] == "string_pattern_mismatch" and err["ctx"].get("pattern") == ID_PATTERN:
        msg = "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    elif err["type"] == "literal_error":
        msg = "must be one of " + err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
    elif err["type"] in ("int_type", "float_type") and isinstance(err.get("input"), bool):
        msg = f"expected a number, not {str(err['input']).lower()}"
    elif err["type"] in ("int_type", "float_type") and _numeric_string(err.get("input")):
        msg = f"expected a number, not the string {err['input'][:40]!r} (write numbers without quotes)"
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
