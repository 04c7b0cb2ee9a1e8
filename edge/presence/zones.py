"""Who is in which zone, from check-ins: enter on check-in, leave on timeout or a check-in elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock
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
        self._since: dict[str, float] = {zone: clock.wall() for zone in zones}

    def set_timeout(self, timeout_s: float) -> None:
        """A new check-in timeout (a configuration change); stays already running are judged by it."""
        self._timeout_s = timeout_s

    def adopt(self, previous: ZonePresence) -> None:
        """Take over the stays of the gateway this one replaces (a rebuild), in the zones that still exist."""
        for shopper_id, stay in previous._stays.items():
            if stay.zone in self._since:
                self._stays[shopper_id] = stay
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
            return changes
        if stay is not None:
            changes.append(self._leave(event.shopper_id, stay))
        self._stays[event.shopper_id] = _Stay(event.zone, event.at_mono, event.at_mono)
        self._since[event.zone] = event.at_wall
        changes.append(PresenceChanged(event.shopper_id, event.zone, "enter", event.at_wall, event.at_mono))
        return changes

    def expire(self) -> list[PresenceChanged]:
        """Leave events for every stay older than the timeout (driven by a timer, not by the next signal)."""
        now = self._clock.monotonic()
        gone = [sid for sid, stay in self._stays.items() if now - stay.last_seen_mono >= self._timeout_s]
        return [self._leave(sid, self._stays[sid]) for sid in gone]

    def forget(self, shopper_id: str) -> list[PresenceChanged]:
        stay = self._stays.get(shopper_id)
        return [] if stay is None else [self._leave(shopper_id, stay)]

    def _leave(self, shopper_id: str, stay: _Stay) -> PresenceChanged:
        del self._stays[shopper_id]
        now_wall = self._clock.wall()
        self._since[stay.zone] = now_wall
        return PresenceChanged(shopper_id, stay.zone, "leave", now_wall, self._clock.monotonic())

    def zone_of(self, shopper_id: str) -> str | None:
        stay = self._stays.get(shopper_id)
        return None if stay is None else stay.zone

    def present(self, zone: str) -> list[str]:
        """Shoppers in ``zone``, most recent check-in first."""
        stays = [(stay.last_seen_mono, sid) for sid, stay in self._stays.items() if stay.zone == zone]
        return [sid for _, sid in sorted(stays, reverse=True)]

    def count(self, zone: str) -> ZoneCount:
        people = sum(1 for stay in self._stays.values() if stay.zone == zone)
        # Check-ins are identified by construction; anonymous sources (camera, BLE) add to people only.
        return ZoneCount(zone=zone, people=people, identified=people, since_wall=self._since.get(zone, 0.0))

    def __len__(self) -> int:
        return len(self._stays)
