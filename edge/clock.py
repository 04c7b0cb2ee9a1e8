"""Time sources: monotonic inside the flow, wall clock only at storage and wire boundaries."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What every stage asks for time; tests inject a manual one."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, timeouts)."""
        ...

    def wall(self) -> float:
        """Unix seconds (UTC) for records, tokens and payload timestamps."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests, replayed traces, benchmarks)."""

    def __init__(self, wall: float = 1_800_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._mono = monotonic

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            msg = "a clock never goes back"
            raise ValueError(msg)
        self._wall += seconds
        self._mono += seconds


def iso_utc(unix_seconds: float) -> str:
    """ISO-8601 UTC with millisecond precision and a Z suffix, as on the wire."""
    stamp = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> float:
    """Parse an ISO-8601 timestamp (Z or offset) to unix seconds; naive means UTC."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()
