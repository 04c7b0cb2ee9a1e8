"""Smart devices follow the opted-in people of their zone: presence -> resolve -> command -> ledger.

Whenever a zone's people may have changed (``ZoneCounts`` publishes it: check-ins, BLE, cameras, timeouts),
each of its devices is given the identified shoppers present who granted ``device_preferences`` (with the
preferences and accessibility needs of their profile) and how many others the cameras count; its plan
(edge/decide/devices/plan.py) says what to command, the adapter turns that into the device's own messages.
A withdrawal or an erasure recomputes the shopper's zone at once. Commands carry values only, never who;
the ledger keeps each command, and the shoppers behind it only with ``measurement``.

The devices' own topics (state, availability) and the staff overrides (``…/device/{id}/override``) come in
through ``on_device`` and ``on_override``; malformed input is counted by reason and never acted on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edge.act.devices import adapter_for
from edge.act.devices.base import Adapter, DeviceMessageError
from edge.config.devices import DeviceSettings, NumberCapability
from edge.deadlines import Deadlines
from edge.decide.devices.plan import Command, DevicePlan, PlanStats, SharedResolutions
from edge.decide.devices.resolve import Person, Value, arrival_order, on_grid, preferences_of
from edge.events import Purpose
from edge.flow.parts import FloorParts
from edge.ledger import WRITE_ERRORS
from edge.sources.payloads import Rejected, json_envelope
from edge.sources.rejections import Envelope, Kind, OverrideReject, RejectedInputError
from edge.transport.mqtt import Inbound

log = logging.getLogger(__name__)

# An override lasts at most this long: a forgotten one must not hold a room for the rest of the day.
OVERRIDE_MAX_S: Final = 4 * 3600.0
# Commands waiting for the ledger at most; beyond, the oldest record is dropped (counted): the device was
# set anyway, only the record of it is lost.
JOURNAL_MAX: Final = 1024


class OverrideError(RejectedInputError):
    """A staff override refused (an ``OverrideReject`` or an ``Envelope`` reason)."""


@dataclass(frozen=True, slots=True)
class DeviceStats:
    id: str
    zone: str
    kind: str
    adapter: str
    plan: PlanStats
    bad_messages: int
    override_left_s: float | None
    values: Mapping[str, Value]  # what it was last told


@dataclass(frozen=True, slots=True)
class DevicesStats:
    devices: tuple[DeviceStats, ...]
    commands: int
    journal_dropped: int
    journal_failed: int
    preferences_ignored: int  # profile entries that were not a number or a short string

    @property
    def mismatched(self) -> list[str]:
        return [d.id for d in self.devices if d.plan.mismatched]

    @property
    def offline(self) -> list[str]:
        return [d.id for d in self.devices if d.plan.available is False]


class DeviceFlow:
    def __init__(
        self,
        devices: Sequence[DeviceSettings],
        parts: FloorParts,
    ) -> None:
        self._parts = parts
        self._plans = {d.id: DevicePlan(d) for d in devices}
        self._adapters: dict[str, Adapter] = {d.id: adapter_for(d) for d in devices}
        self._by_zone: dict[str, list[str]] = {}
        for device in devices:
            self._by_zone.setdefault(device.zone, []).append(device.id)
        self._routes = {topic: d for d, a in self._adapters.items() for topic in a.subscriptions()}
        self._due: Deadlines[str] = Deadlines()
        # zone -> shopper -> when first seen there (monotonic): first_in means who came in first.
        self._arrived: dict[str, dict[str, float]] = {}
        self._bad: Counter[str] = Counter()
        self._last: dict[str, dict[str, Value]] = {d.id: {} for d in devices}
        self._journal: deque[tuple[Command, tuple[str, ...]]] = deque()
        self._journal_ready = asyncio.Event()
        self._commands = 0
        self._dropped = 0
        self._failed = 0
        self._ignored = 0
        parts.counts.subscribe(self.zone_changed)
        parts.consents.subscribe(self._consent_changed)

    def register(self) -> None:
        """Subscribe the devices' own topics and the staff overrides (before the link runs)."""
        for topic in self._routes:
            self._parts.link.on(topic, self.on_device)
        if self._plans:
            self._parts.link.on(self._parts.topics.device_override_filter, self.on_override)

    def start(self) -> None:
        """Every device gets its zone's resolved state (the store's defaults in an empty store)."""
        for zone in self._by_zone:
            self.zone_changed(zone)

    # --- inputs -------------------------------------------------------------------------------------------

    def zone_changed(self, zone: str, *, at_once: bool = False) -> None:
        devices = self._by_zone.get(zone)
        if not devices:
            return
        now = self._parts.clock.monotonic()
        people, strangers = self._people(zone, now)
        ordered = arrival_order(people)  # once for all the zone's devices
        shared: SharedResolutions = {}
        for device_id in devices:
            plan = self._plans[device_id]
            command = plan.set_people(ordered, strangers, now, at_once=at_once, shared=shared, in_order=True)
            self._apply(device_id, command)

    def tick(self) -> None:
        """Timer work: reverts, deferred commands, overrides that end, late confirmations (only what is due)."""
        now = self._parts.clock.monotonic()
        for device_id in self._due.take(lambda at: at <= now):
            self._apply(device_id, self._plans[device_id].tick(now))

    async def on_device(self, message: Inbound) -> None:
        device_id = self._routes.get(message.topic)
        if device_id is None:
            return
        try:
            heard = self._adapters[device_id].hear(message.topic, message.payload)
        except DeviceMessageError as error:
            self._bad[device_id] += 1
            self._parts.rejects.reject(Kind.DEVICE, error.reason, f"{message.topic} ({error})")
            return
        if heard is None:
            return
        plan = self._plans[device_id]
        if heard.state:
            plan.report(heard.state)
            self._reschedule(device_id)
        if heard.available is not None:
            self._apply(device_id, plan.set_available(heard.available, self._parts.clock.monotonic()))

    async def on_override(self, message: Inbound) -> None:
        try:
            device_id, values, for_s = self._override(message)
        except OverrideError as error:
            self._parts.rejects.reject(Kind.OVERRIDE, error.reason, message.topic)
            return
        now = self._parts.clock.monotonic()
        log.info("staff override of %s for %.0f s: %s", device_id, for_s, values)
        self._apply(device_id, self._plans[device_id].set_override(values, now + for_s, now))

    async def run(self) -> None:
        """Write what the devices were told to the ledger, in order, as it happens."""
        while True:
            await self._journal_ready.wait()
            while self._journal:
                command, kept = self._journal.popleft()
                try:
                    await self._parts.ledger.record_device_setting(
                        command.device_id, command.reason.value, command.values, kept
                    )
                except WRITE_ERRORS:
                    self._failed += 1
                    log.exception("could not record the setting of device %s", command.device_id)
            self._journal_ready.clear()

    # --- outputs ------------------------------------------------------------------------------------------

    def stats(self) -> DevicesStats:
        now = self._parts.clock.monotonic()
        return DevicesStats(
            devices=tuple(
                self._device_stats(device_id, plan, now) for device_id, plan in self._plans.items()
            ),
            commands=self._commands,
            journal_dropped=self._dropped,
            journal_failed=self._failed,
            preferences_ignored=self._ignored,
        )

    # --- inside -------------------------------------------------------------------------------------------

    def _device_stats(self, device_id: str, plan: DevicePlan, now: float) -> DeviceStats:
        figures = plan.stats()
        until = figures.override_until_mono
        return DeviceStats(
            id=device_id,
            zone=plan.settings.zone,
            kind=plan.settings.kind,
            adapter=plan.settings.adapter,
            plan=figures,
            bad_messages=self._bad[device_id],
            override_left_s=None if until is None or until <= now else round(until - now, 1),
            values=dict(self._last[device_id]),
        )

    def _people(self, zone: str, now: float) -> tuple[list[Person], int]:
        present = self._parts.counts.who(zone)
        seen, _ = self._parts.counts.seen(zone)  # people a camera counts; the identified are among them
        arrived = self._arrived.setdefault(zone, {})
        for gone in arrived.keys() - set(present):
            del arrived[gone]
        people = []
        for shopper_id in present:
            since = arrived.setdefault(shopper_id, now)
            if not self._parts.consents.has(shopper_id, Purpose.DEVICE_PREFERENCES):
                continue
            preferences, needs, ignored = preferences_of(self._parts.profiles.get(shopper_id) or {})
            self._ignored += ignored
            people.append(Person(shopper_id, since, preferences, needs))
        return people, max(0, seen - len(present))

    def _apply(self, device_id: str, command: Command | None) -> None:
        if command is not None:
            for out in self._adapters[device_id].commands(command.values):
                self._parts.link.publish(out.topic, out.payload)  # never retained: a command is an event
            self._last[device_id].update(command.values)
            self._commands += 1
            kept = tuple(s for s in command.contributors if self._parts.consents.has(s, Purpose.MEASUREMENT))
            if len(self._journal) >= JOURNAL_MAX:
                self._journal.popleft()
                self._dropped += 1
            self._journal.append((command, kept))
            self._journal_ready.set()
        self._reschedule(device_id)

    def _reschedule(self, device_id: str) -> None:
        self._due.set(device_id, self._plans[device_id].next_due())

    def _consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        if purpose is not Purpose.DEVICE_PREFERENCES:
            return
        for zone, arrived in self._arrived.items():
            if shopper_id in arrived:
                self.zone_changed(zone, at_once=not granted)

    def _override(self, message: Inbound) -> tuple[str, dict[str, Value], float]:
        device_id = self._parts.topics.device_of(message.topic)
        plan = self._plans.get(device_id or "")
        if plan is None or device_id is None:
            raise OverrideError(OverrideReject.UNKNOWN_DEVICE, message.topic)
        body = _envelope(message.payload)
        values, for_s = body.get("values", {}), body.get("for_s")
        if not isinstance(values, dict):
            raise OverrideError(OverrideReject.BAD_VALUES, "values is not an object")
        if isinstance(for_s, bool) or not isinstance(for_s, int | float) or not 0 <= for_s <= OVERRIDE_MAX_S:
            raise OverrideError(OverrideReject.BAD_DURATION, f"for_s = {str(for_s)[:20]}")
        return device_id, _checked(plan.settings, values), float(for_s)


def _envelope(payload: bytes) -> dict[str, Any]:
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        raise OverrideError(Envelope(body.reason), body.reason)
    return body


def _checked(settings: DeviceSettings, values: Mapping[str, Any]) -> dict[str, Value]:
    """The override's values, refused whole if one is unknown or outside what the device may be set to."""
    checked: dict[str, Value] = {}
    for name, value in values.items():
        capability = settings.capabilities.get(name)
        if capability is None:
            raise OverrideError(OverrideReject.UNKNOWN_CAPABILITY, name)
        if isinstance(capability, NumberCapability):
            number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
            if not capability.min <= number <= capability.max:
                raise OverrideError(OverrideReject.OUT_OF_BOUNDS, f"{name} = {str(value)[:20]}")
            checked[name] = on_grid(capability, float(number))
        elif value in capability.values:
            checked[name] = str(value)
        else:
            raise OverrideError(OverrideReject.OUT_OF_BOUNDS, f"{name} = {str(value)[:20]}")
    return checked


def override_payload(values: Mapping[str, Value], for_s: float) -> bytes:
    """What a staff app publishes on ``…/device/{id}/override`` (docs/devices.md); ``for_s = 0`` clears."""
    return json.dumps({"v": 1, "values": dict(values), "for_s": for_s}, separators=(",", ":")).encode()
