"""The shop floor's sections of the config: RFID readers, self-checkout and gates, BLE beacons, guest Wi-Fi.

Part of the one schema in agent/config.py (which re-exports these names);
unknown keys are errors in every section.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "BAUDRATES", "ID_PATTERN", "MAX_VERSION", "PROTOCOLS", "AlarmAction", "BeaconConfig", "BleConfig",
    "BleZoneConfig", "CheckoutConfig", "DocVersion", "EddystoneUid", "GateConfig", "HostPort", "IBeaconId", "Ident",
    "PortalConfig", "PresenceConfig",
    "ReaderConfig", "RfidConfig", "Section", "SerialAlarm", "SimulatorConfig", "StationConfig", "WebhookAlarm",
    "WifiConfig", "WifiZoneConfig", "split_host_port",
]

# The reader families we support; a new family is a new id and a new codec module.
PROTOCOLS = ("uhfreader18", "mercury", "r2000", "em4100")
# Rates the supported readers offer; anything else is a typo that would read garbage.
BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
# Ids end up in MQTT topics and URLs: keep them to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
# Every document's `version` (config, catalog, members, campaigns, QR codes): what every JSON reader holds
# exactly (JavaScript's Number.MAX_SAFE_INTEGER) and SQLite's INTEGER stores; epoch milliseconds fit.
MAX_VERSION: Final = 2**53 - 1
DocVersion = Annotated[int, Field(ge=1, le=MAX_VERSION)]


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


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]  # a listen address, "HOST:PORT" or "[V6]:PORT"


def _holds_a_number(annotation: Any) -> bool:
    """int, float, or an optional one (bool is not a number here, nor a Literal of numbers)."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return int in kinds or float in kinds


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Strict mode for every int and float field: `baudrate = "115200"` or `= true` is a mistake in the file,
        which pydantic's lax mode would quietly turn into a number. Only numbers: strings stay lax where a
        file needs them to (paths, antenna numbers as TOML keys)."""
        super().__pydantic_init_subclass__(**kwargs)
        loose = [f for f in cls.model_fields.values()
                 if _holds_a_number(f.annotation) and not any(isinstance(m, Strict) for m in f.metadata)]
        for field in loose:
            field.metadata.append(Strict())
        if loose:
            cls.model_rebuild(force=True, raise_errors=False)


class SimulatorConfig(Section):
    """A simulated reader for `o2o-edge run --demo`: ignored otherwise."""

    scenario: Literal["shopfloor", "checkout", "idle"] = "shopfloor"
    tags: int = Field(default=12, ge=0, le=10_000)
    period_s: float = Field(default=0.2, gt=0, le=10)


class ReaderConfig(Section):
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


class RfidConfig(Section):
    gone_after_s: float = Field(default=3.0, gt=0, le=3600)
    # Keep every raw read as a `tag.read` event (diagnostics; heavy): off by default.
    keep_raw_reads: bool = False
    readers: list[ReaderConfig] = Field(default_factory=list)


class StationConfig(Section):
    id: Ident
    name: str = Field(default="", max_length=80)  # shown on the kiosk ("Till 1, by the door"); default: the id
    zones: list[Ident] = Field(min_length=1)
    token: SecretStr
    # A basket change is announced (basket.updated) once the basket has been still this long.
    settle_s: float = Field(default=0.5, ge=0, le=10)


class SerialAlarm(Section):
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


class WebhookAlarm(Section):
    """An HTTP POST of the alarm (JSON) to a device on the store network, e.g. the gate's controller."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^/\s]+(/\S*)?$")
    timeout_s: float = Field(default=2.0, gt=0, le=30)


AlarmAction = Annotated[SerialAlarm | WebhookAlarm, Field(discriminator="type")]


class GateConfig(Section):
    id: Ident
    zones: list[Ident] = Field(min_length=1)
    alarm: list[AlarmAction] = Field(default_factory=list)
    # The same unpaid item alarms again only after this long (a tag flickering at the edge of the field).
    rearm_s: float = Field(default=10.0, ge=0, le=3600)


class CheckoutConfig(Section):
    stations: list[StationConfig] = Field(default_factory=list)
    gates: list[GateConfig] = Field(default_factory=list)
    # How long an item stays in the sold ledger (paid here, or sold/add from the cloud).
    sold_ttl_days: float = Field(default=90, gt=0, le=3650)


class IBeaconId(Section):
    uuid: str = Field(pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
    major: int = Field(ge=0, le=65535)
    minor: int = Field(ge=0, le=65535)


class EddystoneUid(Section):
    namespace: str = Field(pattern=r"^[0-9a-fA-F]{20}$")
    instance: str = Field(pattern=r"^[0-9a-fA-F]{12}$")


class BeaconConfig(Section):
    id: Ident
    ibeacon: IBeaconId | None = None
    eddystone_uid: EddystoneUid | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> BeaconConfig:
        if (self.ibeacon is None) == (self.eddystone_uid is None):
            raise PydanticCustomError("identity", "give exactly one of ibeacon or eddystone_uid", {})
        return self


class BleZoneConfig(Section):
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


class BleConfig(Section):
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


class PortalConfig(Section):
    """The captive portal behind openNDS (its Forward Authentication Service); docs/guest-wifi.md."""

    fas_secure_level: Literal[0, 1, 2, 3, 4] = 1  # openNDS's fas_secure_enabled
    ndsctl: str = "/usr/bin/ndsctl"  # how guests are checked and authenticated with openNDS
    session_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    # openNDS's faskey (openNDS generates one when its config sets none: copy it here). Levels 2 and 3 decrypt
    # the query with it. At 1 and 4 it is optional: with it the guest is looked up by rhid = sha256(hid + faskey),
    # without it by the address the page was asked from; either way openNDS must vouch for the query's hid.
    faskey: SecretStr = Field(default=SecretStr(""), validate_default=True)
    upload_kbps: int = Field(default=0, ge=0)  # per-guest limits handed to ndsctl auth; 0 = openNDS defaults
    download_kbps: int = Field(default=0, ge=0)
    upload_quota_kb: int = Field(default=0, ge=0)
    download_quota_kb: int = Field(default=0, ge=0)
    # Hosts the success page may link back to (the page the guest first asked for); others are not offered.
    allowed_redirect_hosts: list[str] = Field(default_factory=list)
    logo: Path | None = None  # a PNG, JPEG or SVG shown on the portal (at most 256 KiB)
    # A guest-facing listener serving only the portal (and QR codes, signage): phones reach it, never the
    # staff page, /api or /metrics. None: the portal stays on [http] listen.
    listen: HostPort | None = None
    # HTTPS on the guest listener (RFC 8908 wants an https user-portal-url); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("faskey")
    @classmethod
    def _key_to_decrypt(cls, faskey: SecretStr, info: ValidationInfo) -> SecretStr:
        level = info.data.get("fas_secure_level")
        if level in (2, 3) and not faskey.get_secret_value():
            raise PydanticCustomError(
                "faskey", "fas_secure_level {level} encrypts the query with openNDS's faskey: copy it here (its "
                          "config, or the one it generated)", {"level": level})
        return faskey

    @model_validator(mode="after")
    def _checks(self) -> PortalConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise PydanticCustomError("tls", "tls_cert and tls_key go together", {})
        return self


class WifiZoneConfig(Section):
    """A zone for Wi-Fi footfall: devices heard at least this loud count here (the strongest zone wins)."""

    id: Ident
    rssi_min: int = Field(ge=-127, le=20)


class PresenceConfig(Section):
    source: str = "mon0"  # a monitor-mode interface, or "replay:PATH" (radiotap pcap; "?fast" for no delays)
    window_s: float = Field(default=60.0, ge=1, le=3600)  # one wifi.presence count per window
    zones: list[WifiZoneConfig] = Field(default_factory=list)  # none: one zone "store" for every device


class WifiConfig(Section):
    portal: PortalConfig | None = None
    presence: PresenceConfig | None = None
