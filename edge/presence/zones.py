"""Who is in which zone, from check-ins: enter on check-in, leave on timeout or a check-in elsewhere.

Every operation costs in proportion to what it touches (the shopper, the zone's people, the stays that time
out), never to every shopper in the store: at 200 check-ins/s with the default 600 s timeout a store holds
up to 120,000 stays, and scanning them all on each check-in and each 100 ms tick grew the latency with the
crowd.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Final

from edge.clock import Clock
from edge.events import CheckinReceived, PresenceChanged, ZoneCount

# The timeout heap is rebuilt from the stays when refreshes have left it this many times larger than them
# (each refresh leaves its old deadline behind until that deadline passes): linear cost, paid rarely.
HEAP_SLACK: Final = 2
HEAP_MIN_COMPACT: Final = 1024


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
        # (last seen, shopper) of every stay, a min-heap: the next to time out is on top. An entry whose
        # time is no longer its stay's (refreshed, moved, gone) is skipped when it comes up.
        self._deadlines: list[tuple[float, str]] = []
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
        self._rebuild_deadlines()
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
            self._push_deadline(stay, event.shopper_id)
            return changes
        if stay is not None:
            changes.append(self._leave(event.shopper_id, stay))
        stay = self._stays[event.shopper_id] = _Stay(event.zone, event.at_mono, event.at_mono)
        self._members.setdefault(event.zone, {})[event.shopper_id] = None
        self._push_deadline(stay, event.shopper_id)
        self._since[event.zone] = event.at_wall
        changes.append(PresenceChanged(event.shopper_id, event.zone, "enter", event.at_wall, event.at_mono))
        return changes

    def expire(self) -> list[PresenceChanged]:
        """Leave events for every stay older than the timeout (driven by a timer, not by the next signal).

        Looks only at the deadlines that are due: the oldest first, until one is not.
        """
        now = self._clock.monotonic()
        deadlines = self._deadlines
        changes = []
        while deadlines and now - deadlines[0][0] >= self._timeout_s:
            last_seen, shopper_id = heapq.heappop(deadlines)
            stay = self._stays.get(shopper_id)
            if stay is not None and stay.last_seen_mono == last_seen:
                changes.append(self._leave(shopper_id, stay))
        return changes

    def forget(self, shopper_id: str) -> list[PresenceChanged]:
        stay = self._stays.get(shopper_id)
        return [] if stay is None else [self._leave(shopper_id, stay)]

    def _leave(self, shopper_id: str, stay: _Stay) -> PresenceChanged:
        del self._stays[shopper_id]
        del self._members[stay.zone][shopper_id]
        now_wall = self._clock.wall()
        self._since[stay.zone] = now_wall
        return PresenceChanged(shopper_id, stay.zone, "leave", now_wall, self._clock.monotonic())

    def _push_deadline(self, stay: _Stay, shopper_id: str) -> None:
        heapq.heappush(self._deadlines, (stay.last_seen_mono, shopper_id))
        if len(self._deadlines) > max(HEAP_MIN_COMPACT, HEAP_SLACK * len(self._stays)):
            self._rebuild_deadlines()

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [(stay.last_seen_mono, shopper_id) for shopper_id, stay in self._stays.items()]
        heapq.heapify(self._deadlines)

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
