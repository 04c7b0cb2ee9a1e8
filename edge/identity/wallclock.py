"""The highest wall time this gateway has seen, kept in the ledger, and whether the clock is behind it.

A Pi has no real-time clock: after a power cut it starts from the last time it saved (fake-hwclock) or
from 1970 until NTP answers. Token expiry, replay protection and manifest versions all read the wall
clock, so a clock behind what this gateway has already seen is reported (``clock_behind`` in
``gateway/health`` alerts) and the replay guard refuses any token whose claim may have been forgotten
while the clock was ahead (edge/identity/replay.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock


@dataclass(slots=True, frozen=True)
class ClockStats:
    """The watch as gateway/health shows it (``clock``) and its alert reads it (``clock_behind``)."""

    high_water_wall: float  # the latest wall time this gateway has seen
    behind_s: float  # how far the clock is behind it now (0 when it is not)
    behind: bool  # behind by more than the tolerance: tokens that may have been used are refused


class WallClockWatch:
    """Tracks the wall clock's high-water mark; the ledger keeps it durable (``Ledger.mark_wall``)."""

    def __init__(self, clock: Clock, *, high_water_wall: float, tolerance_s: float) -> None:
        if tolerance_s < 0:
            raise ValueError("tolerance_s must not be negative")
        self._clock = clock
        self._high_water = high_water_wall
        self._tolerance_s = tolerance_s

    @property
    def high_water_wall(self) -> float:
        return self._high_water

    def raise_to(self, wall: float) -> None:
        """A mark read back from the ledger (a rebuild reads it again)."""
        self._high_water = max(self._high_water, wall)

    def observe(self) -> float:
        """Read the clock, raise the mark if it moved past it, and return the reading."""
        now = self._clock.wall()
        self._high_water = max(self._high_water, now)
        return now

    def behind_s(self) -> float:
        """How far the clock is behind the mark now (0 when it is not)."""
        return max(0.0, self._high_water - self._clock.wall())

    def is_behind(self) -> bool:
        """Behind by more than the tolerance (the token leeway: skew a little is normal between clocks)."""
        return self.behind_s() > self._tolerance_s

    def stats(self) -> ClockStats | None:
        """None until a mark exists (a new ledger before the first health tick)."""
        if self._high_water == float("-inf"):
            return None
        return ClockStats(self._high_water, self.behind_s(), self.is_behind())
