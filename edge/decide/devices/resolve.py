"""What one capability of a device should be, given who is in its zone (pure; docs/devices.md "Resolution").

Input: the identified people present who granted ``device_preferences`` (each with their comfort
preferences and accessibility needs, in the order they came in) and how many more people a camera counts
whom the gateway does not know. Output: the value, always inside the capability's bounds and on its step
grid, and which shoppers shaped it; ``None`` when nobody opted in is present (the caller's revert timer
decides when the default comes back).

- An accessibility need beats every comfort preference: the highest (or lowest) needed number, the first
  needed choice. Strangers do not dilute a need.
- Otherwise the people with a preference for the capability merge by its policy (median by default, which
  does not depend on the order people came in); people without one have no say.
- Strangers pull a number toward the default, each weighing ``others_weight`` against one person with a
  preference; a choice goes to the default once they weigh at least as much as those people.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edge.config.devices import (
    ChoiceCapability,
    ChoiceMerge,
    Need,
    NumberCapability,
    NumberMerge,
)

Value = float | str
# A preference value longer than this is not one any device takes.
_CHOICE_MAX_CHARS: Final = 64
# Floats are compared and sent with this many decimals (the step grid is never finer).
_DECIMALS: Final = 6
_NUMBER_MAX: Final = 1e15


@dataclass(frozen=True, slots=True)
class Person:
    """An identified shopper present in the zone who granted ``device_preferences``."""

    shopper_id: str
    arrived: float  # monotonic seconds: orders first_in
    preferences: Mapping[str, Value]
    needs: Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class Resolved:
    value: Value
    contributors: tuple[str, ...]  # the shoppers whose preference or need shaped the value
    need: bool  # an accessibility need decided it


def preferences_of(profile: Mapping[str, Any]) -> tuple[dict[str, Value], dict[str, Value], int]:
    """(preferences, needs, ignored entries) from a profile's ``device_preferences`` and ``accessibility``.

    A value that is not a finite number (booleans are not numbers here) or a short string is ignored and
    counted, never guessed at."""
    found: list[dict[str, Value]] = []
    ignored = 0
    for key in ("device_preferences", "accessibility"):
        raw = profile.get(key)
        kept: dict[str, Value] = {}
        if isinstance(raw, Mapping):
            for name, value in raw.items():
                parsed = _value(value)
                if isinstance(name, str) and parsed is not None:
                    kept[name] = parsed
                else:
                    ignored += 1
        elif raw is not None:
            ignored += 1
        found.append(kept)
    return found[0], found[1], ignored


def _value(value: object) -> Value | None:
    if isinstance(value, bool):
        return "on" if value else "off"  # reduced_motion = true is the choice "on"
    if isinstance(value, int | float):
        # float() of a 400-digit int raises; no device value is that large anyway.
        number = float(value) if abs(value) < _NUMBER_MAX else math.inf
        return number if math.isfinite(number) else None
    if isinstance(value, str) and 0 < len(value) <= _CHOICE_MAX_CHARS:
        return value
    return None


def on_grid(capability: NumberCapability, value: float) -> float:
    """The value on the step grid from ``min``, inside the bounds."""
    steps = math.floor((value - capability.min) / capability.step + 0.5)  # half up, never to even
    snapped = capability.min + steps * capability.step
    return round(min(capability.max, max(capability.min, snapped)), _DECIMALS)


def resolve(
    name: str,
    capability: NumberCapability | ChoiceCapability,
    people: Sequence[Person],
    *,
    strangers: int = 0,
    others_weight: float = 1.0,
    in_order: bool = False,
) -> Resolved | None:
    """The capability's value for these people, or None when no one opted in is present; ``in_order``: the
    people are sorted by ``arrival_order`` already."""
    if not people:
        return None
    ordered = list(people) if in_order else arrival_order(people)
    if isinstance(capability, NumberCapability):
        return _number(name, capability, ordered, strangers * others_weight)
    return _choice(name, capability, ordered, strangers * others_weight)


def arrival_order(people: Sequence[Person]) -> list[Person]:
    """Who came in first, first (ties by id, so the order never depends on how the list was built)."""
    return sorted(people, key=lambda person: (person.arrived, person.shopper_id))


def _number(
    name: str, capability: NumberCapability, people: list[Person], stranger_weight: float
) -> Resolved:
    if capability.need is not None:
        needs = [(p.shopper_id, v) for p in people if isinstance(v := p.needs.get(name), float)]
        if needs:
            pick = max if capability.need is Need.HIGHER else min
            value = pick(v for _, v in needs)
            return Resolved(on_grid(capability, value), tuple(s for s, v in needs if v == value), need=True)
    wanted = [(p.shopper_id, v) for p in people if isinstance(v := p.preferences.get(name), float)]
    if not wanted:
        return Resolved(on_grid(capability, capability.default), (), need=False)
    values = [min(capability.max, max(capability.min, v)) for _, v in wanted]  # each clamped first
    merged = _merge_numbers(capability.merge, values)
    if stranger_weight > 0:
        merged = (len(values) * merged + stranger_weight * capability.default) / (
            len(values) + stranger_weight
        )
    return Resolved(on_grid(capability, merged), tuple(s for s, _ in wanted), need=False)


def _merge_numbers(merge: NumberMerge, values: list[float]) -> float:
    if merge is NumberMerge.MEDIAN:
        return statistics.median(values)
    if merge is NumberMerge.MEAN:
        return statistics.fmean(values)
    if merge is NumberMerge.MIN:
        return min(values)
    if merge is NumberMerge.MAX:
        return max(values)
    return values[0]  # first_in: people are in arrival order


def _choice(
    name: str, capability: ChoiceCapability, people: list[Person], stranger_weight: float
) -> Resolved:
    allowed = set(capability.values)
    needed = set(capability.needs)
    needs = [(p.shopper_id, v) for p in people if (v := p.needs.get(name)) in needed]
    if needs:
        value = needs[0][1]
        return Resolved(value, tuple(s for s, v in needs if v == value), need=True)
    wanted = [
        (p.shopper_id, v) for p in people if isinstance(v := p.preferences.get(name), str) and v in allowed
    ]
    if not wanted or stranger_weight >= len(wanted):
        return Resolved(capability.default, (), need=False)
    if capability.merge is ChoiceMerge.MAJORITY:
        votes = Counter(v for _, v in wanted)
        top = max(votes.values())
        value = next(v for _, v in wanted if votes[v] == top)  # a tie goes to whoever came in first
    elif capability.merge is ChoiceMerge.PRIORITY:
        rank = {v: index for index, v in enumerate(capability.priority)}
        value = min(wanted, key=lambda item: rank.get(str(item[1]), len(rank)))[1]  # stable: first_in
    else:
        value = wanted[0][1]
    return Resolved(value, tuple(s for s, v in wanted if v == value), need=False)


# What a kiosk or interactive screen adapts to (its manifest's `ui` object): a need wins over a preference.
UI_KEYS: Final = ("language", "text_scale", "contrast", "reduced_motion")


def ui_preferences(profile: Mapping[str, Any]) -> dict[str, Value]:
    """The shopper's ``ui`` object for a kiosk (only the keys they gave; needs over comfort)."""
    preferences, needs, _ = preferences_of(profile)
    found: dict[str, Value] = {}
    for key in UI_KEYS:
        value = needs.get(key, preferences.get(key))
        if value is not None:
            found[key] = value
    return found
