"""Consent purposes: the names a shopper's consent is granted or withdrawn for, on both sides of the wire."""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    """Consent purposes (DESIGN.md); each is granted or withdrawn per shopper."""

    PRESENCE_BLE = "presence_ble"
    CAMERA_CHECKIN = "camera_checkin"
    PERSONALIZATION = "personalization"
    CLIENTELING = "clienteling"
    DEVICE_PREFERENCES = "device_preferences"
    MEASUREMENT = "measurement"
