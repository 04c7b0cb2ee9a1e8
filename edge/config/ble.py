"""The ``[ble]`` section: the local scanner, presence thresholds and timers, store beacons, ESPresense nodes.

Apart from the BLE code, so that reading a configuration imports neither bleak nor the presence machine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.config.base import Section as _Section
from edge.presence.rssi import MAX_WINDOW

# BLE RSSI as HCI reports it: -127..+20 dBm; 127 means "not available". Anything else is a broken source.
RSSI_MIN_DBM: Final = -127
RSSI_MAX_DBM: Final = 20
_HEX = re.compile(r"^[0-9a-f]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class BleScannerSettings(BaseModel):
    """How the gateway's own Bluetooth adapter is scanned and supervised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: str = Field(default="hci0", pattern=r"^hci[0-9]{1,3}$", description="BlueZ adapter to scan on.")
    mode: Literal["passive", "active"] = Field(
        default="passive",
        description="'passive' listens only (BlueZ advertisement monitors, iBeacon and Eddystone patterns) "
        "and falls back to 'active' when BlueZ lacks monitors; 'active' also sends scan requests.",
    )
    silence_restart_s: float = Field(
        default=30.0, gt=0, le=3600, description="No advert for this long: stop and start the scanner."
    )
    silence_escalate_after: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Silent restarts in a row before the adapter is power cycled instead.",
    )
    silence_cap_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="Each power cycle that brings no advert doubles the silence allowed, up to this, so an "
        "empty store at night is not power cycled every few minutes.",
    )
    watchdog_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the silence is checked."
    )
    power_off_hold_s: float = Field(
        default=1.0, ge=0, le=60, description="How long the adapter stays off during a power cycle."
    )
    backoff_initial_s: float = Field(
        default=0.5, gt=0, le=60, description="First retry delay after a failure."
    )
    backoff_cap_s: float = Field(
        default=30.0, gt=0, le=3600, description="Longest retry delay (before jitter)."
    )
    dbus_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Bound on each start, stop or D-Bus call, so a wedged bluetoothd "
        "is retried instead of waited on forever.",
    )
    queue_max: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Adverts held for the pipeline; when full the oldest is dropped.",
    )


class BlePresenceSettings(BaseModel):
    """Thresholds and timers of BLE presence; docs/ble-presence.md says how to tune them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(
        default=7,
        ge=1,
        le=MAX_WINDOW,
        description="Samples kept per (shopper, scanner) for the filter (interquartile mean of the window).",
    )
    window_s: float = Field(
        default=10.0, gt=0, le=600, description="A sample counts for this many seconds, then is ignored."
    )
    min_samples: int = Field(
        default=3,
        ge=1,
        le=MAX_WINDOW,
        description="Samples needed in the window before it has a level (3: the filter out-votes one outlier).",
    )
    enter_rssi_dbm: float = Field(
        default=-75.0,
        ge=RSSI_MIN_DBM,
        le=RSSI_MAX_DBM,
        description="Filtered RSSI at or above which a shopper enters the zone of that scanner.",
    )
    exit_rssi_dbm: float = Field(
        default=-85.0,
        ge=RSSI_MIN_DBM,
        le=RSSI_MAX_DBM,
        description="A shopper stays while the zone's filtered RSSI is at or above this (below enter: hysteresis).",
    )
    enter_hold_s: float = Field(
        default=1.0,
        ge=0,
        le=600,
        description="A shopper not yet in a zone enters the best one once it has stayed best this long.",
    )
    switch_margin_db: float = Field(
        default=6.0, ge=0, le=60, description="Another zone must beat the current one by this many dB..."
    )
    switch_hold_s: float = Field(
        default=3.0, ge=0, le=600, description="...continuously for this long before the shopper switches."
    )
    dwell_s: float = Field(
        default=60.0, gt=0, le=3600, description="A 'dwell' event once per stay, after this long in the zone."
    )
    leave_after_s: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="Leave after this long without a sighting at or above the exit level in the zone.",
    )
    max_tracked: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Shoppers tracked at once; when full, the least recently seen is evicted (with a leave).",
    )
    max_scanners_per_identity: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Scanners remembered per shopper; the least recently heard is dropped beyond this.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BlePresenceSettings:
        if self.exit_rssi_dbm >= self.enter_rssi_dbm:
            msg = (
                f"exit_rssi_dbm ({self.exit_rssi_dbm}) must be below enter_rssi_dbm ({self.enter_rssi_dbm}): "
                "the gap between them is the hysteresis that stops flapping"
            )
            raise ValueError(msg)
        if self.min_samples > self.window:
            msg = f"min_samples ({self.min_samples}) cannot exceed window ({self.window})"
            raise ValueError(msg)
        return self


class BleSourceTiming(BaseModel):
    """The filter and timers of one kind of scanner, which depend on how often it reports a phone.

    ``[ble.presence]`` holds them for the gateway's own adapter (every advert, 2-10 Hz); ESPresense nodes
    report a phone about once a second, so ``[ble.espresense.presence]`` has its own, slower defaults
    (docs/ble-presence.md section 8).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(
        default=15,
        ge=1,
        le=MAX_WINDOW,
        description="Reports kept per (shopper, node) for the filter (15 s of reports at 1 Hz).",
    )
    window_s: float = Field(
        default=20.0, gt=0, le=600, description="A report counts for this many seconds, then is ignored."
    )
    min_samples: int = Field(
        default=5, ge=1, le=MAX_WINDOW, description="Reports needed in the window before it has a level."
    )
    enter_hold_s: float = Field(
        default=3.0,
        ge=0,
        le=600,
        description="A shopper not yet in a zone enters the best one once it has stayed best this long.",
    )
    switch_margin_db: float = Field(
        default=9.0, ge=0, le=60, description="Another zone must beat the current one by this many dB..."
    )
    switch_hold_s: float = Field(
        default=10.0, ge=0, le=600, description="...continuously for this long before the shopper switches."
    )
    leave_after_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Leave after this long without a report at or above the exit level in the zone.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BleSourceTiming:
        if self.min_samples > self.window:
            msg = f"min_samples ({self.min_samples}) cannot exceed window ({self.window})"
            raise ValueError(msg)
        return self


class BeaconSettings(BaseModel):
    """One fixed store beacon (iBeacon or Eddystone-UID)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1, max_length=64, description="Human name shown in health (e.g. 'cafe-ceiling')."
    )
    kind: Literal["ibeacon", "eddystone-uid"] = Field(description="Frame the beacon sends.")
    zone: str = Field(description="Zone the beacon anchors.")
    uuid: str | None = Field(default=None, description="iBeacon proximity UUID (lower-case, with dashes).")
    major: int | None = Field(default=None, ge=0, le=65535, description="iBeacon major.")
    minor: int | None = Field(default=None, ge=0, le=65535, description="iBeacon minor.")
    namespace: str | None = Field(default=None, description="Eddystone-UID namespace, 20 hex chars.")
    instance: str | None = Field(default=None, description="Eddystone-UID instance, 12 hex chars.")
    missing_after_s: float = Field(
        default=300.0,
        gt=0,
        le=604_800,
        description="Reported missing when not heard for this long (battery, theft).",
    )

    @model_validator(mode="after")
    def _identity_complete(self) -> BeaconSettings:
        if self.kind == "ibeacon":
            if self.uuid is None or not _UUID.match(self.uuid) or self.major is None or self.minor is None:
                msg = "an ibeacon needs uuid (lower-case, with dashes), major and minor"
                raise ValueError(msg)
        elif (
            self.namespace is None
            or self.instance is None
            or len(self.namespace) != 20
            or len(self.instance) != 12
            or not _HEX.match(self.namespace + self.instance)
        ):
            msg = "an eddystone-uid needs namespace (20 lower-case hex) and instance (12 lower-case hex)"
            raise ValueError(msg)
        return self

    @property
    def key(self) -> str:
        """The same key the frame parsers give (``IBeacon.key`` / ``EddystoneUid.key``)."""
        if self.kind == "ibeacon":
            return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"
        return f"eddystone-uid:{self.namespace}:{self.instance}"


class EspresenseSettings(_Section):
    enabled: bool = Field(default=False, description="Use ESPresense nodes on the broker as extra scanners.")
    topic_prefix: str = Field(default="espresense", description="ESPresense base topic.")
    rooms: dict[str, str] = Field(
        default_factory=dict,
        description="ESPresense room name -> zone; reports from other rooms are ignored.",
    )
    presence: BleSourceTiming = Field(
        default_factory=BleSourceTiming,
        description="Filter and timers for the nodes' reports (about 1 Hz); thresholds, dwell and caps "
        "are [ble.presence]'s.",
    )


class BleSettings(_Section):
    enabled: bool = Field(default=False, description="Scan BLE on this gateway's adapter (BlueZ over D-Bus).")
    zone: str | None = Field(default=None, description="Zone of this gateway's own adapter.")
    scanner: BleScannerSettings = Field(default_factory=BleScannerSettings, description="The local scanner.")
    presence: BlePresenceSettings = Field(
        default_factory=BlePresenceSettings, description="RSSI filter, thresholds, timers, caps."
    )
    eid_keys_file: Path | None = Field(
        default=None,
        description="Eddystone-EID identity keys of shoppers who opted in (JSON, from the cloud).",
    )
    eid_neighbours: int = Field(
        default=1,
        ge=0,
        le=4,
        description="Rotation periods accepted either side of now (beacon clock drift).",
    )
    beacons: list[BeaconSettings] = Field(default_factory=list, description="The store's fixed beacons.")
    espresense: EspresenseSettings = Field(default_factory=EspresenseSettings, description="Remote scanners.")

    @property
    def active(self) -> bool:
        return self.enabled or self.espresense.enabled
