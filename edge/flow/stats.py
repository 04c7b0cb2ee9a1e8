"""The flow's counters, shared by its handlers (one writer each: the event loop), and their frozen snapshot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class FlowCounts:
    """A snapshot of ``FlowStats`` for gateway/health."""

    checkins: int
    exposures: int
    acks_failed: int
    unrecorded: int
    redelivered: int
    acks_failed_by_display: Mapping[str, int]
    shown_at_replaced: int
    last_checkin_wall: float | None


@dataclass(slots=True)
class FlowStats:
    checkins: int = 0
    exposures: int = 0
    acks_failed: int = 0
    # Presence-driven and pending decisions the ledger could not record (not shown; pending ones retried).
    unrecorded: int = 0
    # Check-ins the broker delivered again (MQTT DUP) whose first delivery was already committed.
    redelivered: int = 0
    acks_failed_by_display: Counter[str] = field(default_factory=Counter)
    # Exposures dated by the ack's arrival because the display's shown_at could not be true (its clock).
    shown_at_replaced: int = 0
    last_checkin_wall: float | None = None

    def stats(self) -> FlowCounts:
        return FlowCounts(
            checkins=self.checkins,
            exposures=self.exposures,
            acks_failed=self.acks_failed,
            unrecorded=self.unrecorded,
            redelivered=self.redelivered,
            acks_failed_by_display=dict(self.acks_failed_by_display),
            shown_at_replaced=self.shown_at_replaced,
            last_checkin_wall=self.last_checkin_wall,
        )
