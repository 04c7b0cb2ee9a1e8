"""Who is in which zone, from check-ins: enter on check-in, leave on timeout or a check-in elsewhere.

Every operation costs in proportion to what it touches (the shopper, the zone's people, the stays that time
out), never to every shopper in the store: at 200 check-ins/s with the default 600 s timeout a store holds
up to 120,000 stays, and scanning them all on each check-in and each 100 ms tick grew the latency with the
crowd.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock
from edge.deadlines import Deadlines
from edge.events import CheckinReceived, PresenceChanged, ZoneCount


@dataclass(slots=True)
class _Stay:
    zone: str
    last_seen_mono: float
    arrived_mono: float


class ZonePresence:
    """In-memory presence state; bounded by the number of checked-in shoppers, pruned by timeouts."""

    def __init__(self, zones: list[str], *, timeout_s: float, clock: Clock) -> None:
        self._zones = list(zones)
        self._timeout_s = timeout_s
        self._clock = clock
        self._stays: dict[str, _Stay] = {}
        # zone -> its shoppers in the order their check-ins were recorded (dict as an ordered set).
        self._members: dict[str, dict[str, None]] = {zone: {} for zone in zones}
        # Every stay's last check-in (monotonic), the oldest first: the next to time out.
        self._last_seen: Deadlines[str] = Deadlines()
        self._since: dict[str, float] = {zone: clock.wall() for zone in zones}

    def set_timeout(self, timeout_s: float) -> None:
        """A new check-in timeout (a configuration change); stays already running are judged by it."""
        self._timeout_s = timeout_s

    def adopt(self, previous: ZonePresence) -> None:
        """Take over the stays of the gateway this one replaces (a rebuild), in the zones that still exist."""
        for shopper_id, stay in previous._stays.items():
            if stay.zone in self._since:
                self._stays[shopper_id] = stay
                self._members[stay.zone][shopper_id] = None
                self._last_seen.set(shopper_id, stay.last_seen_mono)
        for zone, since in previous._since.items():
            if zone in self._since:
                self._since[zone] = since

    def knows_zone(self, zone: str) -> bool:
        return zone in self._since

    def checkin(self, event: CheckinReceived) -> list[PresenceChanged]:
        """Record a check-in; returns the leave (of a previous zone) and enter events it causes."""
        changes: list[PresenceChanged] = []
        stay = self._stays.get(event.shopper_id)
        if stay is not None and stay.zone == event.zone:
            stay.last_seen_mono = event.at_mono
            members = self._members[stay.zone]
            del members[event.shopper_id]
            members[event.shopper_id] = None
            self._last_seen.set(event.shopper_id, event.at_mono)
            return changes
        if stay is not None:
            changes.append(self._leave(event.shopper_id, stay))
        stay = self._stays[event.shopper_id] = _Stay(event.zone, event.at_mono, event.at_mono)
        self._members.setdefault(event.zone, {})[event.shopper_id] = None
        self._last_seen.set(event.shopper_id, event.at_mono)
        self._since[event.zone] = event.at_wall
        changes.append(PresenceChanged(event.shopper_id, event.zone, "enter", event.at_wall, event.at_mono))
        return changes

    def expire(self) -> list[PresenceChanged]:
        """Leave events for every stay older than the timeout (driven by a timer, not by the next signal).

        Looks only at the stays that time out: the oldest first, until one does not.
        """
        now, timeout = self._clock.monotonic(), self._timeout_s
        gone = self._last_seen.take(lambda last_seen: now - last_seen >= timeout)
        return [self._leave(shopper_id, self._stays[shopper_id]) for shopper_id in gone]

    def forget(self, shopper_id: str) -> list[PresenceChanged]:
        stay = self._stays.get(shopper_id)
        return [] if stay is None else [self._leave(shopper_id, stay)]

    def _leave(self, shopper_id: str, stay: _Stay) -> PresenceChanged:
        del self._stays[shopper_id]
        del self._members[stay.zone][shopper_id]
        self._last_seen.set(shopper_id, None)
        now_wall = self._clock.wall()
        self._since[stay.zone] = now_wall
        return PresenceChanged(shopper_id, stay.zone, "leave", now_wall, self._clock.monotonic())

    def zone_of(self, shopper_id: str) -> str | None:
        stay = self._stays.get(shopper_id)
        return None if stay is None else stay.zone

    def present(self, zone: str) -> list[str]:
        """Shoppers in ``zone``, the latest check-in first (in the order they were recorded)."""
        return list(reversed(self._members.get(zone, {})))

    def count(self, zone: str) -> ZoneCount:
        people = len(self._members.get(zone, {}))
        # Check-ins are identified by construction; anonymous sources (camera, BLE) add to people only.
        return ZoneCount(zone=zone, people=people, identified=people, since_wall=self._since.get(zone, 0.0))

    def __len__(self) -> int:
        return len(self._stays)
