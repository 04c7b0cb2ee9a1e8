"""The MQTT topic names of the wire contract (docs/mqtt.md), built from one root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Topics:
    """Topic names under ``root`` (``store/{store_id}``)."""

    root: str

    @property
    def status(self) -> str:
        return f"{self.root}/gateway/status"

    @property
    def health(self) -> str:
        return f"{self.root}/gateway/health"

    @property
    def config_desired(self) -> str:
        return f"{self.root}/config/desired"

    @property
    def config_reported(self) -> str:
        return f"{self.root}/config/reported"

    @property
    def checkin(self) -> str:
        return f"{self.root}/checkin"

    def checkin_result(self, reply_to: str) -> str:
        return f"{self.root}/checkin/result/{reply_to}"

    def display_content(self, display_id: str) -> str:
        return f"{self.root}/display/{display_id}/content"

    @property
    def display_ack_filter(self) -> str:
        return f"{self.root}/display/+/ack"

    @property
    def display_availability_filter(self) -> str:
        return f"{self.root}/display/+/availability"

    def presence(self, zone: str) -> str:
        return f"{self.root}/presence/{zone}"

    @property
    def pos_transaction_filter(self) -> str:
        return f"{self.root}/pos/+/transaction"

    def lane_of(self, topic: str) -> str | None:
        """The lane in ``.../pos/{lane}/transaction``, or None if the topic is not a POS transaction topic.

        The segment is returned as it is; whether it is a well-formed lane id is the caller's rule.
        """
        return self._id_in(topic, "pos", "transaction")

    def _id_in(self, topic: str, section: str, leaf: str) -> str | None:
        """The one segment between ``{root}/{section}/`` and ``/{leaf}``, or None."""
        prefix = f"{self.root}/{section}/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        if len(rest) != 2 or not rest[0] or rest[1] != leaf:
            return None
        return rest[0]

    @property
    def device_override_filter(self) -> str:
        return f"{self.root}/device/+/override"

    def device_override(self, device_id: str) -> str:
        return f"{self.root}/device/{device_id}/override"

    @property
    def privacy_action(self) -> str:
        return f"{self.root}/privacy/action"

    def privacy_result(self, reply_to: str) -> str:
        return f"{self.root}/privacy/result/{reply_to}"

    @property
    def privacy_request(self) -> str:
        return f"{self.root}/privacy/request"

    @property
    def context_weather(self) -> str:
        """A local weather sensor's readings (retained; docs/context.md)."""
        return f"{self.root}/context/weather"

    def staff_notice(self, team: str) -> str:
        return f"{self.root}/staff/notice/{team}"

    @property
    def staff_ack_filter(self) -> str:
        return f"{self.root}/staff/+/ack"

    def team_of(self, topic: str) -> str | None:
        """The team in ``.../staff/{team}/ack``, or None."""
        return self._id_in(topic, "staff", "ack")

    def device_of(self, topic: str) -> str | None:
        """The device id in ``.../device/{id}/override``, or None if the topic is not one."""
        return self._id_in(topic, "device", "override")

    def display_of(self, topic: str) -> str | None:
        """The display id in ``.../display/{id}/...``, or None if the topic is not a display topic."""
        prefix = f"{self.root}/display/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        if len(rest) != 2 or not rest[0]:
            return None
        return rest[0]


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` and a trailing ``#``."""
    pattern_parts = pattern.split("/")
    topic_parts = topic.split("/")
    for index, part in enumerate(pattern_parts):
        if part == "#":
            return True
        if index >= len(topic_parts):
            return False
        if part not in ("+", topic_parts[index]):
            return False
    return len(pattern_parts) == len(topic_parts)
