"""A fitting room's devices and the people who walk into it, shared by the device tests."""

from __future__ import annotations

from typing import Any

from edge.config.devices import DeviceSettings
from edge.decide.devices.resolve import Person, Value


def fitting_room(**overrides: Any) -> DeviceSettings:
    """One device with every kind of capability the issue names (a climate, a light, music, a kiosk's ui)."""
    settings: dict[str, Any] = {
        "id": "fitting-1",
        "zone": "fitting-rooms",
        "kind": "climate",
        "adapter": "zigbee2mqtt",
        "address": "fitting room 1",
        "capabilities": {
            "temperature": {"default": 21, "min": 18, "max": 25, "step": 0.5},
            "color_temp": {"default": 4000, "min": 2700, "max": 6500, "step": 100},
            "volume": {"default": 30, "min": 0, "max": 60, "step": 5, "need": "lower"},
            "text_scale": {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.1, "need": "higher"},
            "contrast": {
                "type": "choice",
                "default": "normal",
                "values": ["normal", "high"],
                "needs": ["high"],
            },
            "language": {
                "type": "choice",
                "default": "en",
                "values": ["en", "de", "fr"],
                "merge": "majority",
            },
        },
        "min_interval_s": 5,
        "revert_after_s": 60,
        "confirm_s": 10,
    }
    settings.update(overrides)
    return DeviceSettings.model_validate(settings)


def person(
    shopper_id: str,
    arrived: float,
    needs: dict[str, Value] | None = None,
    **preferences: Value,
) -> Person:
    return Person(shopper_id, arrived, preferences, needs or {})
