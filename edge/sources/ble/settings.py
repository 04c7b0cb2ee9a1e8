"""The local scanner's settings, apart from the scanner so that reading a config never imports bleak."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
