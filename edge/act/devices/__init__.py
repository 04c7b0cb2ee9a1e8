"""Device adapters: Zigbee2MQTT, Tasmota and generic JSON over MQTT (docs/devices.md "Adapters")."""

from __future__ import annotations

from edge.act.devices.base import Adapter
from edge.act.devices.generic import Generic
from edge.act.devices.tasmota import Tasmota
from edge.act.devices.zigbee2mqtt import Zigbee2Mqtt
from edge.config.devices import DeviceSettings


def adapter_for(settings: DeviceSettings) -> Adapter:
    if settings.adapter == "zigbee2mqtt":
        return Zigbee2Mqtt(settings)
    if settings.adapter == "tasmota":
        return Tasmota(settings)
    return Generic(settings)
