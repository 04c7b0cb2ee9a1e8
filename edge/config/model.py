"""The gateway's settings schema: every key, its type, default and meaning (pydantic, extra keys forbidden)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config.base import HOUR_S
from edge.config.base import Section as _Section
from edge.config.ble import BleSettings
from edge.config.camera import CameraSettings
from edge.config.context import ContextSettings
from edge.config.control_plane import ControlSettings, HealthSettings, LoggingSettings
from edge.config.dashboard import DashboardSettings
from edge.config.decisions import DecisionSettings
from edge.config.devices import DeviceSettings
from edge.config.ledger import LedgerSettings
from edge.config.measurement import MeasurementSettings
from edge.config.staff import StaffSettings

# Shopper tokens are short-lived by design (DESIGN.md: "minutes"): a stolen token works at most this long,
# and the replay guard holds every jti in memory this long.
MAX_TOKEN_LIFETIME_S: Final = 1_800.0
# Plain http is allowed only to this machine (the reference profile store in tests and demos): anywhere
# else the store's bearer token and shopper ids would cross the network in clear.
LOOPBACK_NAMES: Final = frozenset({"localhost"})


class StoreSettings(_Section):
    id: str = Field(
        title="Store id",
        description="This store's id; the audience tokens must carry, and part of every topic.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    )
    topic_root: str = Field(
        default="store/{store_id}",
        title="Topic root",
        description="Prefix of every MQTT topic; '{store_id}' is replaced by the store id.",
    )

    @field_validator("topic_root")
    @classmethod
    def _topic_root_ok(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or "#" in value or "+" in value:
            msg = "must be a non-empty topic without wildcards or leading/trailing '/'"
            raise ValueError(msg)
        return value


class TlsSettings(_Section):
    enabled: bool = Field(default=False, description="Connect to the broker over TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker (PEM).")
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(default=None, description="Client private key (PEM) for mutual TLS.")
    insecure: bool = Field(default=False, description="Skip hostname verification (lab use only).")


class MqttSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field(
        default="edge-gateway-{store_id}",
        description="MQTT client id; fixed so the broker keeps our session (queued acks) across restarts.",
    )
    username: str | None = Field(default=None, description="Broker user name, if the broker wants one.")
    password_env: str | None = Field(default=None, description="Environment variable holding the password.")
    password_file: Path | None = Field(default=None, description="File holding the password (systemd creds).")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="TLS options.")
    keepalive_s: int = Field(
        default=15, ge=5, le=600, description="MQTT keepalive; LWT fires after 1.5x this."
    )
    tcp_nodelay: bool = Field(
        default=True, description="Disable Nagle on the socket (45 ms -> 2 ms median on loopback, DESIGN.md)."
    )
    outbox_max: int = Field(
        default=10_000,
        ge=10,
        le=1_000_000,
        description="Outgoing messages held while disconnected; oldest dropped past it.",
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=600, description="Cap of the jittered reconnect backoff."
    )
    max_payload_bytes: int = Field(
        default=16_384,
        ge=256,
        le=1_048_576,
        description="Inbound payloads larger than this are counted and dropped.",
    )
    inflight_max: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Inbound messages processed at once; the receive loop waits past it.",
    )


class IdentitySettings(_Section):
    public_key_files: list[Path] = Field(
        default_factory=list, description="Ed25519 public keys (PEM) of the cloud that signs shopper tokens."
    )
    public_key_env: str | None = Field(
        default=None, description="Environment variable holding one more public key as PEM text."
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    max_token_lifetime_s: float = Field(
        default=900.0,
        gt=0,
        le=MAX_TOKEN_LIFETIME_S,
        description="Tokens valid for longer than this are refused (short-lived only: at most 30 minutes).",
    )
    consents_file: Path | None = Field(
        default=None, description="Seed file of shoppers' consents and profiles (until cloud sync exists)."
    )


class PresenceSettings(_Section):
    checkin_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=4 * HOUR_S,
        description="A checked-in shopper counts as present in the zone this long (at most a long visit).",
    )


class FallbackContent(_Section):
    template: str = Field(default="fallback", description="Template the display shows with no offer.")
    data: dict[str, Any] = Field(default_factory=dict, description="Free JSON handed to the template.")


class ZoneSettings(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Zone id (topic-safe).")
    name: str = Field(default="", description="Human name for dashboards.")


class DisplaySettings(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Display id (topic-safe).")
    zone: str = Field(description="Zone whose shoppers this display serves.")
    fallback: FallbackContent = Field(default_factory=FallbackContent, description="Idle content.")
    ui: bool = Field(
        default=False,
        description="A kiosk or interactive screen: its personal manifests carry the shopper's `ui` "
        "preferences (language, text_scale, contrast, reduced_motion) when they granted device_preferences.",
    )
    pickup: bool = Field(
        default=False,
        description="A collection-point screen: never shows offers; lists the references of ready online "
        "orders of shoppers who checked in, each for content_ttl_s (docs/pickup.md).",
    )
    min_display_s: float = Field(
        default=8.0, ge=0, le=600, description="Content stays at least this long before another replaces it."
    )
    content_ttl_s: float = Field(
        default=45.0, gt=0, le=HOUR_S, description="A personal manifest expires to the fallback after this."
    )
    pairing_rotate_s: float = Field(
        default=60.0,
        ge=10,
        le=HOUR_S,
        description="A kiosk (`ui = true`): its pairing code (the QR a shopper's app scans) rotates this often; "
        "the previous code stays valid one more period, and a used code is replaced at once (docs/identity.md).",
    )


class SyncSettings(_Section):
    """The cloud profile store (docs/sync.md): pull changes, push the outbox, fetch profiles on a miss."""

    enabled: bool = Field(default=False, description="Sync with the cloud profile store.")
    url: str = Field(
        default="",
        description="Base URL of the profile store: https://, or http:// to this machine only (tests, demos).",
        pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
    )
    token_env: str | None = Field(
        default=None, description="Environment variable holding the store's bearer token."
    )
    token_file: Path | None = Field(default=None, description="File holding the store's bearer token.")
    pull_interval_s: float = Field(
        default=30.0, gt=0, le=HOUR_S, description="How often to ask for changes when idle."
    )
    push_interval_s: float = Field(
        default=1.0, gt=0, le=600, description="How often an idle pusher looks at the outbox."
    )
    batch_events: int = Field(default=500, ge=1, le=1000, description="Events per push request at most.")
    batch_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        le=960 * 1024,
        description="Event bytes per push at most (the contract takes 1 MiB per request, envelope included).",
    )
    page_limit: int = Field(default=500, ge=1, le=1000, description="Changes per pulled page at most.")
    retry_max_s: float = Field(
        default=60.0, gt=0, le=HOUR_S, description="Cap of the jittered retry backoff."
    )
    request_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="Timeout of one pull or push request."
    )
    profile_timeout_s: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description="How long a check-in of an unknown shopper waits for their profile before deciding without.",
    )
    outbox_max_mb: float = Field(
        default=400.0,
        gt=0,
        # A Pi's SD card: 8 GB of event bytes is ~3.3 GB of file (stored compact, ~0.41x), more than a store's
        # card should give it.
        le=8_000,
        description=(
            "Outbox bound (event bytes as pushed; the file is ~0.41x that). The default holds a 24 h outage at "
            "10 events/s; past it telemetry is dropped (oldest first), privacy events and conversions never."
        ),
    )

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if value and urlsplit(value).scheme == "http" and not is_loopback(urlsplit(value).hostname):
            msg = (
                "must be https:// (http:// only to this machine: the token and shopper ids would go in clear)"
            )
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _complete(self) -> SyncSettings:
        if self.enabled:
            if not self.url:
                raise ValueError("url is required when sync is enabled")
            if not (self.token_env or self.token_file):
                raise ValueError("token_env or token_file is required when sync is enabled")
        return self


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (a loopback address or 'localhost')."""
    if host is None:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GatewaySettings(_Section):
    """The whole configuration file."""

    store: StoreSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    presence: PresenceSettings = Field(default_factory=PresenceSettings)
    decisions: DecisionSettings = Field(default_factory=DecisionSettings)
    zones: list[ZoneSettings] = Field(min_length=1, description="The store's zones.")
    displays: list[DisplaySettings] = Field(default_factory=list, description="Screens and their zones.")
    ble: BleSettings = Field(default_factory=BleSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    cameras: list[CameraSettings] = Field(
        default_factory=list,
        description="Opt-in cameras above screens: QR check-in and anonymous counts; none by default.",
    )
    devices: list[DeviceSettings] = Field(
        default_factory=list,
        description="Smart devices that follow the opted-in people of their zone (docs/devices.md).",
    )
    staff: StaffSettings = Field(default_factory=StaffSettings)
    context: ContextSettings = Field(default_factory=ContextSettings)
    measurement: MeasurementSettings = Field(default_factory=MeasurementSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @model_validator(mode="after")
    def _references(self) -> GatewaySettings:
        zone_ids = [zone.id for zone in self.zones]
        problems: list[str] = []
        if len(set(zone_ids)) != len(zone_ids):
            problems.append("zones: zone ids must be unique")
        display_ids = [display.id for display in self.displays]
        if len(set(display_ids)) != len(display_ids):
            problems.append("displays: display ids must be unique")
        for index, display in enumerate(self.displays):
            if display.zone not in zone_ids:
                problems.append(f"displays.{index}.zone: unknown zone '{display.zone}'")
        device_ids = [device.id for device in self.devices]
        if len(set(device_ids)) != len(device_ids):
            problems.append("devices: device ids must be unique")
        routes = [(device.adapter, device.address) for device in self.devices]
        if len(set(routes)) != len(routes):
            problems.append("devices: two devices of one adapter cannot share an address (their topics)")
        problems.extend(
            f"devices.{index}.zone: unknown zone {device.zone!r}"
            for index, device in enumerate(self.devices)
            if device.zone not in zone_ids
        )
        problems.extend(
            f"staff.teams.{team}: unknown zone {zone!r}"
            for team, zones in self.staff.teams.items()
            for zone in zones
            if zone not in zone_ids
        )
        camera_ids = [camera.id for camera in self.cameras]
        if len(set(camera_ids)) != len(camera_ids):
            problems.append("cameras: camera ids must be unique")
        for index, camera in enumerate(self.cameras):
            if camera.zone not in zone_ids:
                problems.append(f"cameras.{index}.zone: unknown zone {camera.zone!r}")
        if self.ble.enabled and self.ble.zone not in zone_ids:
            problems.append(f"ble.zone: the local adapter needs a known zone (got {self.ble.zone!r})")
        for index, beacon in enumerate(self.ble.beacons):
            if beacon.zone not in zone_ids:
                problems.append(f"ble.beacons.{index}.zone: unknown zone '{beacon.zone}'")
        for room, zone in self.ble.espresense.rooms.items():
            if zone not in zone_ids:
                problems.append(f"ble.espresense.rooms.{room}: unknown zone '{zone}'")
        if self.control.enabled and not self.control.public_key_files:
            problems.append("control.public_key_files: accepting config pushes needs the cloud signer's key")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def topic_root(self) -> str:
        return self.store.topic_root.replace("{store_id}", self.store.id)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id.replace("{store_id}", self.store.id)
