"""The cloud's time source: when a change or an event was recorded (wall clock, UTC seconds)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the APIs ask for the time; tests inject their own (any object with ``wall()``)."""

    def wall(self) -> float:
        """Unix seconds (UTC)."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def wall(self) -> float:
        return time.time()
