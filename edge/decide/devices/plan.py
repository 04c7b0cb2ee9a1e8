"""One device's state machine (pure, clock passed in): who is present -> what to command, and when.

``DevicePlan`` turns the people of its zone, a staff override and the device's own availability and state
reports into commands, under three rules that hold whatever the input (tests/devices/test_plan.py):

- a value is never outside the capability's bounds, never off its step grid (so never a change smaller than
  the step);
- at most one command per ``min_interval_s``; a change that comes sooner is sent when the interval ends
  (the latest wins; ``next_due`` says when);
- the store's defaults come back ``revert_after_s`` after the last opted-in person left, not before, unless
  the change is a withdrawal of consent or an erasure (``at_once``): then the person's values go with the
  next command the interval allows.

A device is taken to be there until it says it is offline (many report no availability at all); offline
it gets nothing, and when it is back it gets the whole resolved state again. A device that
does not report the commanded state within ``confirm_s`` counts a mismatch (once per command).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from edge.config.devices import ChoiceCapability, DeviceSettings, NumberCapability
from edge.decide.devices.resolve import Person, Resolved, Value, arrival_order, on_grid, resolve

_NEVER: Final = -math.inf

# One zone change's resolutions, by (capability, strangers, others_weight): the people are the same for all.
SharedResolutions = dict[tuple[str, int, float], "Resolved | None"]


class Reason(StrEnum):
    PEOPLE = "people"  # the preferences of the people present
    DEFAULT = "default"  # nobody opted in is present: the store's values
    OVERRIDE = "override"  # a staff override


@dataclass(frozen=True, slots=True)
class Command:
    device_id: str
    values: Mapping[str, Value]  # only what changes (everything after the device came back)
    reason: Reason
    contributors: tuple[str, ...]  # shoppers whose preferences or needs are in ``values``
    needs: tuple[str, ...]  # capabilities an accessibility need decided


@dataclass(frozen=True, slots=True)
class PlanStats:
    commands: int
    deferred: int  # changes held back by min_interval_s (sent later)
    mismatches: int  # commanded state not reported within confirm_s
    mismatched: bool  # the last command is still not confirmed, past its confirm_s
    available: bool | None  # None: the device has not said yet
    override_until_mono: float | None
    personal: bool  # the device holds somebody's preferences now


class DevicePlan:
    __slots__ = (
        "_available",
        "_commands",
        "_confirm_by",
        "_deferred",
        "_empty_since",
        "_held",
        "_keys",
        "_mismatched",
        "_mismatches",
        "_override",
        "_override_until",
        "_people",
        "_reported",
        "_revert_now",
        "_sent",
        "_sent_at",
        "_shared",
        "_strangers",
        "_waiting",
        "settings",
    )

    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        self._people: tuple[Person, ...] = ()
        self._strangers = 0
        self._empty_since: float | None = None  # when the last opted-in person left; None: never there
        self._revert_now = False
        self._override: dict[str, Value] = {}
        self._override_until = _NEVER
        self._sent: dict[str, Value] = {}  # what the device was last told; empty: unknown, send all
        self._sent_at = _NEVER
        self._available: bool | None = None
        self._reported: dict[str, Value] = {}
        self._confirm_by: float | None = None
        self._held: tuple[dict[str, Value], tuple[str, ...], tuple[str, ...]] = ({}, (), ())
        self._waiting = False  # a change waits for min_interval_s
        self._shared: SharedResolutions | None = None
        # A capability's identity for sharing a resolution: its name and its whole definition.
        self._keys = {name: f"{name}:{c.model_dump_json()}" for name, c in settings.capabilities.items()}
        self._commands = 0
        self._deferred = 0
        self._mismatches = 0
        self._mismatched = False

    # --- inputs -------------------------------------------------------------------------------------------

    def set_people(
        self,
        people: Sequence[Person],
        strangers: int,
        now: float,
        *,
        at_once: bool = False,
        shared: SharedResolutions | None = None,
        in_order: bool = False,
    ) -> Command | None:
        """The opted-in people now in the zone, how many others a camera counts; ``at_once`` for a
        withdrawal or an erasure (no revert delay). ``shared``: resolutions of this same change, kept for
        the zone's other devices (devices with the same capability resolve it once); ``in_order``: the
        people are in ``arrival_order`` already (sorted once for the zone's devices)."""
        was_there = bool(self._people)
        self._people = tuple(people) if in_order else tuple(arrival_order(people))
        self._strangers = max(0, strangers)
        if self._people:
            self._empty_since = None
            self._revert_now = False
        elif was_there:
            self._empty_since = now
            self._revert_now = at_once
        elif at_once:
            self._revert_now = True
        self._shared = shared
        try:
            return self._step(now)
        finally:
            self._shared = None

    def set_override(self, values: Mapping[str, Value], until: float, now: float) -> Command | None:
        """A staff override (already checked against the capabilities and their bounds) until ``until``."""
        self._override = dict(values)
        self._override_until = until
        return self._step(now)

    def set_available(self, available: bool, now: float) -> Command | None:
        """The device's availability; coming back, it is told the whole resolved state again."""
        back = available and self._available is False
        self._available = available
        if back:
            self._sent = {}
            self._confirm_by = None
        return self._step(now)

    def report(self, state: Mapping[str, Value]) -> None:
        """State the device reported (already in capability units)."""
        self._reported.update(state)
        if (self._confirm_by is not None or self._mismatched) and self._confirmed():
            self._confirm_by = None
            self._mismatched = False

    def tick(self, now: float) -> Command | None:
        """Timer work: a revert that is due, a deferred change, an override that ended, a late confirmation."""
        if self._confirm_by is not None and now >= self._confirm_by:
            self._confirm_by = None
            if not self._confirmed():
                self._mismatches += 1
                self._mismatched = True
        return self._step(now)

    # --- outputs ------------------------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The next time ``tick`` has something to do, or None."""
        due = [t for t in self._deadlines() if t is not None]
        return min(due) if due else None

    def desired(self, now: float) -> tuple[dict[str, Value], Reason, tuple[str, ...], tuple[str, ...]]:
        """(values, why, contributors, capabilities decided by a need) the device should have now."""
        if self._people:
            values, contributors, needs = self._resolve()
            self._held = (values, contributors, needs)
            reason = Reason.PEOPLE
        elif self._revert_pending(now):
            values, contributors, needs = self._held  # somebody just left: the room stays as it was
            values = dict(values)
            reason = Reason.PEOPLE
        else:
            values = {name: _default(c) for name, c in self.settings.capabilities.items()}
            contributors, needs, reason = (), (), Reason.DEFAULT
        if self._override and now < self._override_until:
            values.update(self._override)
            reason = Reason.OVERRIDE
        return values, reason, contributors, needs

    def stats(self) -> PlanStats:
        return PlanStats(
            commands=self._commands,
            deferred=self._deferred,
            mismatches=self._mismatches,
            mismatched=self._mismatched,
            available=self._available,
            override_until_mono=self._override_until if self._override else None,
            personal=bool(self._people) or (self._empty_since is not None and not self._revert_now),
        )

    # --- inside -------------------------------------------------------------------------------------------

    def _resolve(self) -> tuple[dict[str, Value], tuple[str, ...], tuple[str, ...]]:
        values: dict[str, Value] = {}
        contributors: set[str] = set()
        needs: list[str] = []
        shared, weight = self._shared, self.settings.others_weight
        for name, capability in self.settings.capabilities.items():
            key = (self._keys[name], self._strangers, weight)
            if shared is not None and key in shared:
                resolved = shared[key]
            else:
                resolved = resolve(
                    name,
                    capability,
                    self._people,
                    strangers=self._strangers,
                    others_weight=weight,
                    in_order=True,
                )
                if shared is not None:
                    shared[key] = resolved
            if resolved is None:  # nobody: cannot happen with people present, kept total
                values[name] = _default(capability)
                continue
            values[name] = resolved.value
            contributors.update(resolved.contributors)
            if resolved.need:
                needs.append(name)
        return values, tuple(sorted(contributors)), tuple(needs)

    def _revert_pending(self, now: float) -> bool:
        if self._empty_since is None or self._revert_now:
            return False
        return now < self._empty_since + self.settings.revert_after_s

    def _deadlines(self) -> list[float | None]:
        revert = None
        if not self._people and self._empty_since is not None and not self._revert_now:
            revert = self._empty_since + self.settings.revert_after_s
        override = self._override_until if self._override else None
        interval = self._sent_at + self.settings.min_interval_s if self._waiting else None
        return [revert, override, interval, self._confirm_by]

    def _step(self, now: float) -> Command | None:
        if self._override and now >= self._override_until:
            self._override = {}
            self._override_until = _NEVER
        if self._empty_since is not None and not self._people and not self._revert_pending(now):
            self._empty_since = None  # the revert is done (or was at once): back to "nobody was here"
            self._revert_now = False
        if self._available is False:
            return None
        values, reason, contributors, needs = self.desired(now)
        changes = {name: value for name, value in values.items() if self._differs(name, value)}
        if not changes:
            self._waiting = False
            return None
        if now < self._sent_at + self.settings.min_interval_s:
            if not self._waiting:
                self._deferred += 1
            self._waiting = True
            return None
        self._waiting = False
        self._sent.update(changes)
        self._sent_at = now
        self._commands += 1
        self._confirm_by = now + self.settings.confirm_s
        shaped = contributors if reason is not Reason.DEFAULT else ()
        return Command(self.settings.id, changes, reason, shaped, tuple(n for n in needs if n in changes))

    def _differs(self, name: str, value: Value) -> bool:
        sent = self._sent.get(name)
        if sent is None:
            return True
        capability = self.settings.capabilities[name]
        if isinstance(capability, NumberCapability) and isinstance(value, float) and isinstance(sent, float):
            return abs(value - sent) >= capability.step / 2
        return value != sent

    def _confirmed(self) -> bool:
        for name, sent in self._sent.items():
            reported = self._reported.get(name)
            capability = self.settings.capabilities[name]
            if isinstance(capability, NumberCapability):
                if not isinstance(reported, float) or abs(reported - float(sent)) > capability.step:
                    return False
            elif reported != sent:
                return False
        return True


def _default(capability: NumberCapability | ChoiceCapability) -> Value:
    if isinstance(capability, NumberCapability):
        return on_grid(capability, capability.default)
    return capability.default
