"""What every device adapter does: capability values -> MQTT messages, and the device's messages -> state or
availability in capability units (docs/devices.md "Adapters"). Pure: no connection, no clock."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from edge.config.devices import DeviceSettings
from edge.decide.devices.resolve import Value
from edge.sources.rejections import DeviceReject, RejectedInputError

# A device's state message larger than this is not one (the broker's own limit is larger).
MAX_STATE_BYTES: Final = 16 * 1024
# A number a device reports beyond this is junk whatever its unit (a level, a setpoint, mired, kelvin): it is
# refused as ``bad_value``, so every state value is finite and any arithmetic on it (a unit conversion) is too.
MAX_STATE_NUMBER: Final = 1e15
# A colour temperature below 1 mired is above 1,000,000 K: not a lamp's.
MIN_MIRED: Final = 1.0


class DeviceMessageError(RejectedInputError):
    """A device's message that cannot be read (a ``DeviceReject``): counted by reason, never acted on."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Heard:
    """What a device said: its state (capability -> value, in capability units) or its availability."""

    state: Mapping[str, Value] | None = None
    available: bool | None = None


class Adapter(Protocol):
    settings: DeviceSettings

    def subscriptions(self) -> tuple[str, ...]:
        """Topics the device speaks on (state, availability)."""
        ...

    def commands(self, values: Mapping[str, Value]) -> list[Outgoing]:
        """The messages that set ``values`` (capability units, already within the bounds)."""
        ...

    def hear(self, topic: str, payload: bytes) -> Heard | None:
        """A message on one of ``subscriptions``; None if it is not about this device's capabilities.

        Raises ``DeviceMessageError`` for a payload that cannot be read."""
        ...


def json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_STATE_BYTES:
        msg = f"state message of {len(payload)} bytes (at most {MAX_STATE_BYTES})"
        raise DeviceMessageError(DeviceReject.OVERSIZED, msg)
    try:
        found = json.loads(payload)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError, a 5,000-digit int
        msg = f"not JSON: {error}"
        raise DeviceMessageError(DeviceReject.NOT_JSON, msg) from None
    if not isinstance(found, dict):
        msg = f"a state message is a JSON object, not {type(found).__name__}"
        raise DeviceMessageError(DeviceReject.NOT_OBJECT, msg)
    return found


def availability(payload: bytes, *, online: str = "online", offline: str = "offline") -> bool:
    """Plain ``online``/``offline`` (any case) or JSON ``{"state": "online"}`` (Zigbee2MQTT 2.x)."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        state = json_object(payload).get("state")
        text = state if isinstance(state, str) else ""
    lowered = text.lower()
    if lowered == online.lower():
        return True
    if lowered == offline.lower():
        return False
    msg = f"availability is {online!r} or {offline!r}, not {text[:40]!r}"
    raise DeviceMessageError(DeviceReject.BAD_AVAILABILITY, msg)


def number(value: object, what: str) -> float:
    """A finite JSON number (not a boolean) within ±MAX_STATE_NUMBER."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{what} is not a number: {str(value)[:40]!r}"
        raise DeviceMessageError(DeviceReject.BAD_VALUE, msg)
    # Compared before any conversion: float() of a 401-digit JSON integer raises OverflowError. NaN fails the
    # comparison too, and so does inf.
    if not -MAX_STATE_NUMBER <= value <= MAX_STATE_NUMBER:
        msg = (
            f"{what} is not finite"
            if isinstance(value, float) and not math.isfinite(value)
            else f"{what} is out of range"
        )
        raise DeviceMessageError(DeviceReject.BAD_VALUE, msg)
    return float(value)


def kelvin_to_mired(kelvin: float) -> int:
    return round(1_000_000 / kelvin)


def mired_to_kelvin(mired: float) -> float:
    # Below 1 mired (above 1,000,000 K) is junk, and 1e6 / 5e-324 would be inf.
    if not mired >= MIN_MIRED:
        msg = f"colour temperature of {mired} mired"
        raise DeviceMessageError(DeviceReject.BAD_VALUE, msg)
    return 1_000_000 / mired


def payload_json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
