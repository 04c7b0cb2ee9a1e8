"""Validated configuration: schema, file loading and secret lookup."""

from edge.config.load import (
    ConfigError,
    load_settings,
    missing_files,
    parse_settings,
    read_mqtt_password,
    read_sync_token,
)
from edge.config.model import DisplaySettings, GatewaySettings, MqttSettings

__all__ = [
    "ConfigError",
    "DisplaySettings",
    "GatewaySettings",
    "MqttSettings",
    "load_settings",
    "missing_files",
    "parse_settings",
    "read_mqtt_password",
    "read_sync_token",
]
