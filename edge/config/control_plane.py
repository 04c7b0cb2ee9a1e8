"""The control plane's settings: signed configuration pushes (``[control]``), health and metrics
(``[health]``), logging (``[logging]``). Part of the schema of ``edge/config/model.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge.config.base import HOUR_S, Section


class HealthSettings(Section):
    interval_s: float = Field(
        default=15.0,
        # Faster than twice a second is load on the broker for no reader (a push may set it).
        ge=0.5,
        le=HOUR_S,
        description="How often gateway/health is republished.",
    )
    watchdog_s: float = Field(
        default=0.0, ge=0, le=300, description="sd_notify WATCHDOG period; 0 = half of WATCHDOG_USEC if set."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address of the Prometheus endpoint (/metrics); local only unless a scraper needs more.",
    )
    metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="Port of the Prometheus endpoint; 0 turns it off."
    )


class ControlSettings(Section):
    """The control plane: configuration pushed from the cloud (``config/desired``), models, state."""

    enabled: bool = Field(default=False, description="Accept signed configuration pushes on config/desired.")
    public_key_files: list[Path] = Field(
        default_factory=list,
        description="Ed25519 public key(s) (PEM) of the cloud's configuration signer; a push signed by any "
        "other key is rejected. Not the token key: a leaked token key must not reconfigure stores.",
    )
    state_dir: Path = Field(
        default=Path("state"),
        description="Where applied configurations (snapshots, the last 10) and models (the last 3) are kept. "
        "Relative to this file like every path: 'state' next to it by default, so a gateway run by hand needs "
        "no root; an installed one sets /var/lib/edge-gateway (the unit's StateDirectory).",
    )
    files_dir: Path | None = Field(
        default=None,
        description="The folder a config push may take a model, its manifest and an offer catalog from, by "
        "file name only (they arrive there out of band). Unset: a push cannot name files.",
    )
    camera_hosts: list[str] = Field(
        default_factory=list,
        description="Host names or addresses a config push may point a camera at, besides the LAN's private "
        "and link-local addresses (e.g. 'cam-cafe.local'; '127.0.0.1' for a local relay).",
    )
    max_payload_bytes: int = Field(
        default=262_144,
        ge=1024,
        le=1_048_576,
        description="A config push larger than this is rejected unread.",
    )
    health_deadline_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="After a push is applied, the broker must be connected and every component healthy "
        "within this time, or the previous configuration is restored.",
    )
    snapshots_kept: int = Field(
        default=10, ge=2, le=100, description="Applied configurations kept for rollback."
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    json_format: bool = Field(default=False, description="One JSON object per line (journald friendly).")
