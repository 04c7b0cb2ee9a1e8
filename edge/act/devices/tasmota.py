"""Tasmota: a light's ``cmnd/{topic}/Dimmer`` (0-100), ``cmnd/{topic}/CT`` (153-500 mired) and
``cmnd/{topic}/Power`` (ON/OFF); state from ``stat/{topic}/RESULT`` and ``tele/{topic}/STATE`` (JSON with
``POWER``, ``Dimmer``, ``CT``), availability from the LWT ``tele/{topic}/LWT`` (``Online``/``Offline``).
The prefixes are Tasmota's FullTopic ``%prefix%/%topic%/``, configurable per device."""

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
)
from edge.config.devices import DeviceSettings
from edge.decide.devices.resolve import Value
from edge.sources.rejections import DeviceReject

# Tasmota's CT range (cold 153 mired = 6536 K, warm 500 mired = 2000 K).
CT_MIN: Final = 153
CT_MAX: Final = 500


class Tasmota:
    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        prefixes = settings.tasmota
        topic = settings.address
        self._command = f"{prefixes.command_prefix}/{topic}"
        self._result = f"{prefixes.status_prefix}/{topic}/RESULT"
        self._state = f"{prefixes.telemetry_prefix}/{topic}/STATE"
        self._lwt = f"{prefixes.telemetry_prefix}/{topic}/LWT"

    def subscriptions(self) -> tuple[str, ...]:
        return (self._result, self._state, self._lwt)

    def commands(self, values: Mapping[str, Value]) -> list[Outgoing]:
        found = []
        for name, value in values.items():
            if name == "power":
                found.append(Outgoing(f"{self._command}/Power", b"ON" if value == "on" else b"OFF"))
            elif name == "brightness":
                found.append(Outgoing(f"{self._command}/Dimmer", str(round(float(value))).encode()))
            elif name == "color_temp":
                mired = min(CT_MAX, max(CT_MIN, kelvin_to_mired(float(value))))
                found.append(Outgoing(f"{self._command}/CT", str(mired).encode()))
        return found

    def hear(self, topic: str, payload: bytes) -> Heard | None:
        if topic == self._lwt:
            return Heard(available=availability(payload, online="Online", offline="Offline"))
        if topic not in (self._result, self._state):
            return None
        state = self._read(json_object(payload))
        return Heard(state=state) if state else None

    def _read(self, report: Mapping[str, Any]) -> dict[str, Value]:
        wanted = self.settings.capabilities
        state: dict[str, Value] = {}
        if "power" in wanted and "POWER" in report:
            power = report["POWER"]
            if power not in ("ON", "OFF"):
                msg = f"POWER is ON or OFF, not {str(power)[:20]!r}"
                raise DeviceMessageError(DeviceReject.BAD_VALUE, msg)
            state["power"] = power.lower()
        if "brightness" in wanted and "Dimmer" in report:
            state["brightness"] = number(report["Dimmer"], "Dimmer")
        if "color_temp" in wanted and "CT" in report:
            state["color_temp"] = mired_to_kelvin(number(report["CT"], "CT"))
        return state
