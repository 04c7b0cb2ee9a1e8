"""How many people each zone holds, from every source, and its retained ``presence/{zone}`` message.

Identified shoppers come from check-ins (``ZonePresence``) and BLE (``BlePresence``); cameras add anonymous
counts. Only counts leave: never who.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

from edge.clock import Clock, iso_utc
from edge.presence.zones import ZonePresence
from edge.transport.mqtt import MqttLink
from edge.transport.topics import Topics


class PresenceSource(Protocol):
    def present(self, zone: str) -> list[str]: ...


class ZoneCounts:
    """People per zone (identified, and seen by cameras) and the publishing of ``presence/{zone}``."""

    def __init__(
        self,
        zones: Sequence[str],
        *,
        presence: ZonePresence,
        others: Sequence[PresenceSource] = (),
        link: MqttLink,
        topics: Topics,
        clock: Clock,
    ) -> None:
        self.zones = tuple(zones)
        self._presence = presence
        self._others = tuple(others)
        self._link = link
        self._topics = topics
        self._clock = clock
        # Per zone, per camera: (people in view, their mean dwell so far).
        self._cameras: dict[str, dict[str, tuple[int, float | None]]] = {}
        # Per zone: the count last published and since when it holds.
        self._last: dict[str, tuple[int, float]] = {}
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(zone)`` whenever the people of ``zone`` may have changed (every publish)."""
        self._listeners.append(listener)

    def who(self, zone: str) -> list[str]:
        """Identified shoppers in ``zone`` from every presence source (check-ins, then BLE), each once."""
        people = dict.fromkeys(self._presence.present(zone))
        for source in self._others:
            people.update(dict.fromkeys(source.present(zone)))
        return list(people)

    def identified(self, zone: str) -> int:
        """How many identified shoppers ``zone`` holds (``who``)."""
        return len(self.who(zone))

    def audience(self, zone: str) -> tuple[int, int, float | None]:
        """(people, identified, mean dwell of those seen by a camera) in ``zone``.

        A camera sees everyone in front of it without knowing who they are; identified shoppers are a subset
        of them, so the zone holds at least the larger of the two counts.
        """
        identified = self.identified(zone)
        seen, dwell = self.seen(zone)
        return max(identified, seen), identified, dwell

    def seen(self, zone: str) -> tuple[int, float | None]:
        """The largest count a camera has of ``zone`` (anonymous), and that camera's mean dwell."""
        seen, dwell = 0, None
        for count, mean in self._cameras.get(zone, {}).values():
            if count >= seen:
                seen, dwell = count, mean
        return seen, dwell

    def people(self, zone: str) -> int:
        """The audience a decision for ``zone`` sees."""
        return self.audience(zone)[0]

    def camera(self, camera_id: str, zone: str, people: int, dwell: float | None) -> None:
        """A camera's count for ``zone``; republished when the number of people changed."""
        cameras = self._cameras.setdefault(zone, {})
        before = cameras.get(camera_id)
        cameras[camera_id] = (people, dwell)
        if before is None or before[0] != people:
            self.publish(zone)

    def publish(self, zone: str) -> None:
        people, identified, dwell = self.audience(zone)
        now = self._clock.wall()
        if self._last.get(zone, (-1, 0.0))[0] != people:
            self._last[zone] = (people, now)
        body: dict[str, object] = {
            "v": 1,
            "ts": iso_utc(now),
            "people": people,
            "identified": identified,
            "since": iso_utc(self._last[zone][1]),
        }
        if dwell is not None:
            body["dwell_s"] = round(dwell, 1)
        self._link.publish(
            self._topics.presence(zone), json.dumps(body, separators=(",", ":")).encode(), retain=True
        )
        for listener in self._listeners:
            listener(zone)

    def publish_all(self) -> None:
        for zone in self.zones:
            self.publish(zone)

    def publish_unknown(self) -> None:
        """A clean stop: every zone's retained count becomes unknown until the gateway counts again.

        ``people`` and ``identified`` are null, not 0 (nobody counted them), with ``stale: true``; the next
        start publishes every zone afresh (``publish_all``). A crash cannot do this: ``gateway/status``
        (the LWT) then says ``offline``, and a dashboard should treat counts as stale while it does.
        """
        now = iso_utc(self._clock.wall())
        body = json.dumps(
            {"v": 1, "ts": now, "people": None, "identified": None, "since": now, "stale": True},
            separators=(",", ":"),
        ).encode()
        for zone in self.zones:
            self._link.publish(self._topics.presence(zone), body, retain=True)
        self._last.clear()
