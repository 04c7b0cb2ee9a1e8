"""Log lines about repeated events at most once per key per interval, saying how many were held back."""

from __future__ import annotations

from typing import Protocol


class _Monotonic(Protocol):
    def monotonic(self) -> float: ...


class LogThrottle:
    """``admit(key)`` returns how many events of ``key`` went unlogged since its last line, or None if this
    one must not be logged either. The first event of a key is always admitted (with 0 held back).

    Memory is one entry per key: callers use a bounded set of keys (subscription patterns, kinds), never
    anything a sender chooses. Time is the injected clock's monotonic time, so tests move it by hand.
    """

    __slots__ = ("_clock", "_held", "_interval_s", "_last")

    def __init__(self, clock: _Monotonic, interval_s: float) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
