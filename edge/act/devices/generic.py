"""Any device that takes a JSON object: templated topics (``{address}``) and a field map per capability
(a kiosk app, a music player, a fan). Values go out in capability units, as they are."""

from __future__ import annotations

from collections.abc import Mapping

from edge.act.devices.base import Heard, Outgoing, availability, json_object, number, payload_json
from edge.config.devices import DeviceSettings, NumberCapability
from edge.decide.devices.resolve import Value


class Generic:
    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        generic = settings.generic
        address = settings.address
        self._command = generic.command_topic.replace("{address}", address)
        self._state = generic.state_topic.replace("{address}", address) if generic.state_topic else None
        self._availability = (
            generic.availability_topic.replace("{address}", address) if generic.availability_topic else None
        )
        self._fields = {name: generic.fields.get(name, name) for name in settings.capabilities}

    def subscriptions(self) -> tuple[str, ...]:
        return tuple(topic for topic in (self._state, self._availability) if topic is not None)

    @property
    def reports_availability(self) -> bool:
        return self._availability is not None

    def commands(self, values: Mapping[str, Value]) -> list[Outgoing]:
        body = {self._fields[name]: value for name, value in values.items()}
        return [Outgoing(self._command, payload_json(body))] if body else []

    def hear(self, topic: str, payload: bytes) -> Heard | None:
        if topic == self._availability:
            return Heard(available=availability(payload))
        if topic != self._state:
            return None
        report = json_object(payload)
        state: dict[str, Value] = {}
        for name, capability in self.settings.capabilities.items():
            field = self._fields[name]
            if field in report:
                raw = report[field]
                state[name] = number(raw, field) if isinstance(capability, NumberCapability) else str(raw)
        return Heard(state=state) if state else None
