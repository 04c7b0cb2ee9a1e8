"""A ``[[devices]]`` entry: a smart device in a zone, its adapter and, per capability, the store's default,
the hard safe bounds, the smallest step worth a command and how several people's preferences merge
(docs/devices.md). Schema only: the resolution is ``edge/decide/devices/``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from edge.config.base import HOUR_S, Section

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A capability name is also a key of a shopper's preferences and of the kiosk's `ui` object.
_CAPABILITY = r"^[a-z][a-z0-9_]{0,31}$"


class NumberMerge(StrEnum):
    MEDIAN = "median"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    FIRST_IN = "first_in"


class ChoiceMerge(StrEnum):
    FIRST_IN = "first_in"
    MAJORITY = "majority"
    PRIORITY = "priority"


class Need(StrEnum):
    """Which way an accessibility need wins on a number: the larger text, the lower volume."""

    HIGHER = "higher"
    LOWER = "lower"


# The capabilities a store's hardware shares, with the limits no configuration or signed push may leave:
# what a fitting room may be set to whatever anyone asks (a climate 16-28 °C, a light that is never off
# for a person inside, music at most 80 %). A capability not named here is bounded only by its own min/max.
HARD_LIMITS: Final[dict[str, tuple[float, float, str]]] = {
    "temperature": (16.0, 28.0, "°C"),
    "color_temp": (2000.0, 6500.0, "K"),
    "brightness": (1.0, 100.0, "%"),
    "volume": (0.0, 80.0, "%"),
    "text_scale": (1.0, 2.0, "x"),
}


class NumberCapability(Section):
    """A number the device can be set to (a setpoint, a colour temperature, a level)."""

    type: Literal["number"] = Field(default="number", description="A numeric capability.")
    default: float = Field(description="The store's value: nobody opted in is present.")
    min: float = Field(description="Safe lower bound; nothing is ever commanded below it.")
    max: float = Field(description="Safe upper bound; nothing is ever commanded above it.")
    step: float = Field(
        gt=0,
        le=1000,
        description="Values are set on this grid from `min`; a change smaller than it is never commanded.",
    )
    merge: NumberMerge = Field(
        default=NumberMerge.MEDIAN,
        description="How several people's preferences combine: median, mean, min, max or first_in.",
    )
    need: Need | None = Field(
        default=None,
        description="Which way an accessibility need on this capability wins (`higher`: larger text; "
        "`lower`: quieter music); none: it is a comfort setting only.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> NumberCapability:
        if not self.min <= self.default <= self.max:
            msg = f"needs min <= default <= max (got {self.min}, {self.default}, {self.max})"
            raise ValueError(msg)
        return self


class ChoiceCapability(Section):
    """One of a few values (a language, a contrast, a playlist, on/off)."""

    type: Literal["choice"] = Field(description="A capability with a fixed set of values.")
    default: str = Field(description="The store's value: nobody opted in is present.")
    values: list[str] = Field(min_length=1, max_length=64, description="Every value the device accepts.")
    merge: ChoiceMerge = Field(
        default=ChoiceMerge.FIRST_IN,
        description="How several people's preferences combine: first_in, majority or priority.",
    )
    priority: list[str] = Field(
        default_factory=list, description='For `merge = "priority"`: values in the order they win.'
    )
    needs: list[str] = Field(
        default_factory=list,
        description="Values that are an accessibility need (a `high` contrast, music `off`): asked for as a "
        "need by anyone present, they win over every comfort preference.",
    )

    @model_validator(mode="after")
    def _known_values(self) -> ChoiceCapability:
        known = set(self.values)
        strays = [v for v in (self.default, *self.priority, *self.needs) if v not in known]
        if strays:
            msg = f"default, priority and needs must be among values (not {sorted(set(strays))})"
            raise ValueError(msg)
        if self.merge is ChoiceMerge.PRIORITY and not self.priority:
            msg = 'merge = "priority" needs a priority list'
            raise ValueError(msg)
        return self


def _capability_type(value: Any) -> str:
    """A capability is a number unless it says ``type = "choice"``."""
    found = value.get("type", "number") if isinstance(value, dict) else getattr(value, "type", "number")
    return str(found)


Capability = Annotated[
    Annotated[NumberCapability, Tag("number")] | Annotated[ChoiceCapability, Tag("choice")],
    Discriminator(_capability_type),
]


class GenericAdapterSettings(Section):
    """Topics and field names of a device that speaks plain JSON over MQTT (a kiosk app, anything else).

    ``{address}`` in a topic is the device's address. Each capability is sent under its own name unless
    ``fields`` maps it to another.
    """

    command_topic: str = Field(
        default="devices/{address}/set", min_length=1, description="Where commands are published."
    )
    state_topic: str | None = Field(
        default="devices/{address}/state", description="Where the device reports its state (JSON)."
    )
    availability_topic: str | None = Field(
        default="devices/{address}/availability",
        description='Where the device reports `online`/`offline` (plain or JSON `{"state": ...}`).',
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="Capability name -> the device's own JSON field name."
    )

    @model_validator(mode="after")
    def _templates(self) -> GenericAdapterSettings:
        for topic in (self.command_topic, self.state_topic, self.availability_topic):
            if topic is not None and any(c in topic for c in "+#"):
                msg = f"a topic of a device cannot hold MQTT wildcards (got {topic!r})"
                raise ValueError(msg)
        return self


class Zigbee2MqttSettings(Section):
    """Where Zigbee2MQTT lives and which setpoint a thermostat exposes."""

    base_topic: str = Field(
        default="zigbee2mqtt", pattern=r"^[^+#\x00]{1,64}$", description="Zigbee2MQTT's `mqtt.base_topic`."
    )
    setpoint: Literal["current_heating_setpoint", "occupied_heating_setpoint"] = Field(
        default="current_heating_setpoint",
        description="The thermostat's setpoint property (TRVs expose `current_heating_setpoint`, "
        "room thermostats often `occupied_heating_setpoint`).",
    )


class TasmotaSettings(Section):
    """Tasmota's topic prefixes (its FullTopic `%prefix%/%topic%/`)."""

    command_prefix: str = Field(default="cmnd", pattern=r"^[^+#/\x00]{1,32}$", description="`%prefix%` 1.")
    status_prefix: str = Field(default="stat", pattern=r"^[^+#/\x00]{1,32}$", description="`%prefix%` 2.")
    telemetry_prefix: str = Field(default="tele", pattern=r"^[^+#/\x00]{1,32}$", description="`%prefix%` 3.")


# What each adapter can carry: Tasmota's light commands are Dimmer, CT and Power; Zigbee2MQTT and the
# generic adapter pass any other capability through under its own (or mapped) name.
TASMOTA_CAPABILITIES: Final = frozenset({"brightness", "color_temp", "power"})


class DeviceSettings(Section):
    """A smart device that follows the preferences of the opted-in people in its zone."""

    id: str = Field(pattern=_ID, description="Device id (health, logs, overrides).")
    zone: str = Field(description="The zone whose people the device serves.")
    kind: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="`light`, `climate`, `audio`, `kiosk` or another kind (dashboards, docs).",
    )
    adapter: Literal["zigbee2mqtt", "tasmota", "generic"] = Field(
        description="How commands and state travel (docs/devices.md)."
    )
    address: str = Field(
        pattern=r"^[^+#\x00]{1,128}$",
        description="Zigbee2MQTT friendly name, Tasmota topic, or the generic adapter's `{address}`.",
    )
    capabilities: dict[str, Capability] = Field(
        min_length=1, max_length=16, description="What the gateway sets, by capability name."
    )
    min_interval_s: float = Field(
        default=5.0, ge=0.5, le=HOUR_S, description="At most one command per this many seconds."
    )
    revert_after_s: float = Field(
        default=60.0,
        ge=0,
        le=HOUR_S,
        description="Back to the store's defaults this long after the last opted-in person left (someone "
        "stepping out for ten seconds does not make the room flicker).",
    )
    others_weight: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="How much each person present whom the gateway does not know pulls the result toward "
        "the default (a camera counts them).",
    )
    confirm_s: float = Field(
        default=10.0, gt=0, le=600, description="The device must report the commanded state within this."
    )
    generic: GenericAdapterSettings = Field(
        default_factory=GenericAdapterSettings, description="Topics and fields (adapter = generic)."
    )
    zigbee2mqtt: Zigbee2MqttSettings = Field(
        default_factory=Zigbee2MqttSettings, description="Base topic and setpoint (adapter = zigbee2mqtt)."
    )
    tasmota: TasmotaSettings = Field(
        default_factory=TasmotaSettings, description="Topic prefixes (adapter = tasmota)."
    )

    @model_validator(mode="after")
    def _capabilities(self) -> DeviceSettings:
        problems = []
        for name, capability in self.capabilities.items():
            if not _valid_name(name):
                problems.append(f"capabilities.{name}: a name is lower case letters, digits and _")
            if isinstance(capability, NumberCapability) and name in HARD_LIMITS:
                low, high, unit = HARD_LIMITS[name]
                if capability.min < low or capability.max > high:
                    problems.append(
                        f"capabilities.{name}: min/max must stay within {low:g}-{high:g} {unit} "
                        f"(got {capability.min:g}-{capability.max:g})"
                    )
        if self.adapter == "tasmota":
            problems.extend(
                f"capabilities.{name}: a Tasmota light takes only {sorted(TASMOTA_CAPABILITIES)}"
                for name in self.capabilities
                if name not in TASMOTA_CAPABILITIES
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _valid_name(name: str) -> bool:
    return re.fullmatch(_CAPABILITY, name) is not None
