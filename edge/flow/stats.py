"""The flow's counters, shared by its handlers (one writer each: the event loop)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
