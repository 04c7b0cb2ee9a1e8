"""The ``[dashboard]`` section: the store dashboard the gateway serves over HTTP (docs/dashboard.md). Schema only.

On this machine (a loopback address) it may run without a password; on any other address a password is
required, from a file or the environment, never from the TOML: a configuration without one does not validate.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Final

from pydantic import Field, model_validator

from edge.config.base import Section

LOOPBACK_NAMES: Final = frozenset({"localhost"})


def is_loopback_bind(host: str) -> bool:
    """Whether an address to listen on is this machine only ('localhost' or a loopback address)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere as far as we can tell


class DashboardSettings(Section):
    """The store dashboard: zones and their anonymous counts, screens, devices, health, recent decisions."""

    enabled: bool = Field(default=False, description="Serve the store dashboard over HTTP.")
    bind: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on. A loopback address needs no password; any other address "
        "(the store's LAN, 0.0.0.0) refuses to start without `password_file` or `password_env`.",
    )
    port: int = Field(default=9180, ge=0, le=65535, description="Port to listen on (0: any free port).")
    user: str = Field(
        default="store",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="User name of HTTP basic authentication (when a password is set).",
    )
    password_env: str | None = Field(
        default=None, description="Environment variable holding the dashboard password."
    )
    password_file: Path | None = Field(default=None, description="File holding the dashboard password.")
    refresh_s: float = Field(
        default=1.0,
        ge=0.2,
        le=60,
        description="How often an open dashboard receives a fresh snapshot (and 0.25 s after decisions).",
    )
    decisions_shown: int = Field(
        default=20, ge=1, le=200, description="The last decisions shown (offer, zone, model; never who)."
    )
    max_clients: int = Field(
        default=8, ge=1, le=100, description="Open live streams at most; one more is refused (503)."
    )
    failures_per_minute: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed logins per client address per minute; past it the address is refused (429) "
        "without checking the password until the minute is over.",
    )

    @model_validator(mode="after")
    def _password_off_loopback(self) -> DashboardSettings:
        if self.enabled and not is_loopback_bind(self.bind) and not (self.password_file or self.password_env):
            msg = (
                f"bind {self.bind!r} is not a loopback address: the dashboard needs password_file or "
                "password_env there (it shows the store's state to anyone who can reach it)"
            )
            raise ValueError(msg)
        return self
