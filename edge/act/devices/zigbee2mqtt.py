"""Zigbee2MQTT: one JSON command on ``{base}/{friendly_name}/set``, state from ``{base}/{friendly_name}``,
availability from ``{base}/{friendly_name}/availability`` (plain or JSON).

Units (Zigbee2MQTT's exposes): ``brightness`` 0-254 (ours: %), ``color_temp`` in mireds (ours: K), the
thermostat's ``current_heating_setpoint`` or ``occupied_heating_setpoint`` in °C (ours: ``temperature``),
``state`` ON/OFF (ours: ``power`` on/off), ``system_mode`` (ours: ``mode``). Any other capability is sent and
read under its own name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from edge.act.devices.base import (
    DeviceMessageError,
    Heard,
    Outgoing,
    availability,
    json_object,
    kelvin_to_mired,
    mired_to_kelvin,
    number,
    payload_json,
)
from edge.config.devices import DeviceSettings, NumberCapability
from edge.decide.devices.resolve import Value
from edge.sources.rejections import DeviceReject

BRIGHTNESS_MAX: Final = 254


class Zigbee2Mqtt:
    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        z2m = settings.zigbee2mqtt
        self._state_topic = f"{z2m.base_topic}/{settings.address}"
        self._set_topic = f"{self._state_topic}/set"
        self._availability_topic = f"{self._state_topic}/availability"
        self._setpoint = z2m.setpoint

    def subscriptions(self) -> tuple[str, ...]:
        return (self._state_topic, self._availability_topic)

    def commands(self, values: Mapping[str, Value]) -> list[Outgoing]:
        body: dict[str, Any] = {}
        for name, value in values.items():
            if name == "brightness":
                level = round(float(value) * BRIGHTNESS_MAX / 100)
                body["brightness"] = level
                body["state"] = "ON" if level > 0 else "OFF"
            elif name == "color_temp":
                body["color_temp"] = kelvin_to_mired(float(value))
            elif name == "temperature":
                body[self._setpoint] = value
            elif name == "power":
                body["state"] = "ON" if value == "on" else "OFF"
            elif name == "mode":
                body["system_mode"] = value
            else:
                body[name] = value
        return [Outgoing(self._set_topic, payload_json(body))] if body else []

    def hear(self, topic: str, payload: bytes) -> Heard | None:
        if topic == self._availability_topic:
            return Heard(available=availability(payload))
        if topic != self._state_topic:
            return None
        return Heard(state=self._state(json_object(payload)))

    def _state(self, report: Mapping[str, Any]) -> dict[str, Value]:
        wanted = self.settings.capabilities
        state: dict[str, Value] = {}
        if "brightness" in wanted and "brightness" in report:
            state["brightness"] = number(report["brightness"], "brightness") * 100 / BRIGHTNESS_MAX
        if "color_temp" in wanted and "color_temp" in report:
            state["color_temp"] = mired_to_kelvin(number(report["color_temp"], "color_temp"))
        if "temperature" in wanted and self._setpoint in report:
            state["temperature"] = number(report[self._setpoint], self._setpoint)
        if "power" in wanted and "state" in report:
            power = report["state"]
            if power not in ("ON", "OFF"):
                msg = f"state is ON or OFF, not {str(power)[:20]!r}"
                raise DeviceMessageError(DeviceReject.BAD_VALUE, msg)
            state["power"] = power.lower()
        if "mode" in wanted and "system_mode" in report:
            state["mode"] = str(report["system_mode"])
        for name, capability in wanted.items():
            if name in state or name in ("brightness", "color_temp", "temperature", "power", "mode"):
                continue
            if name in report:
                raw = report[name]
                state[name] = number(raw, name) if isinstance(capability, NumberCapability) else str(raw)
        return state
