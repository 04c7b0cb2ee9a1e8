"""A robust RSSI level per (identity, scanner) pair: the interquartile mean of a short, age-bounded window."""

from __future__ import annotations

import math
from array import array

# Largest window allowed: 64 samples is over 6 s of adverts even at 10 Hz, more than a filter should lag.
MAX_WINDOW = 64
# Samples dropped from each end of a sorted window of n: a quarter, rounded up, but never all of them
# (1 and 2 samples are averaged as they are). Precomputed: this runs once per advert.
_TRIM = tuple(min(-(-n // 4), (n - 1) // 2) for n in range(MAX_WINDOW + 1))
# A window short of min_samples stays so until the next sample: ageing only ever removes samples.
_UNTIL_NEXT_SAMPLE = math.inf


class RssiWindow:
    """The last ``capacity`` samples, each counted for ``span_s`` seconds; the level is their interquartile mean.

    Sorted, a quarter (rounded up) is dropped from each end and the rest averaged: with 7 samples the mean of
    the middle 3, which ignores two fades and two spikes at once; with 3 or 5 samples it is the median.
    docs/ble-presence.md compares it with the median, the mean and an EMA on the same traces.

    Samples must be added in time order (the caller keeps each shopper's timeline monotone), so the
    oldest sample is always at the front and ageing is a pop from the front. Both arrays hold at most
    ``capacity`` items: memory per pair is fixed whatever the advert rate. RSSI must be -127..20 dBm (the
    caller validates it), which fits a signed byte.
    """

    __slots__ = ("_at", "_capacity", "_min_samples", "_rssi", "last_at", "level", "span_s", "valid_until")

    def __init__(self, capacity: int, span_s: float, min_samples: int) -> None:
        self._capacity = capacity
        self.span_s = span_s  # how long a sample counts: a window whose newest is older than this is stale
        self._min_samples = min_samples
        # Typed arrays, not lists: no object per sample. A full table (5,000 shoppers x 16 scanners)
        # takes 43 MB instead of 73 MB, at the same speed.
        self._at = array("d")
        self._rssi = array("b")  # RSSI is -127..20: a signed byte
        self.last_at = -math.inf
        self.level: float | None = None  # the filtered RSSI once there are min_samples, else None
        # The cached values hold until the oldest sample in them ages out.
        self.valid_until = -math.inf

    def add(self, rssi: int, at: float) -> float | None:
        """Add one sample heard at ``at`` (monotonic seconds); returns the new level."""
        times = self._at
        if len(times) >= self._capacity:
            del times[0]
            del self._rssi[0]
        times.append(at)
        self._rssi.append(rssi)
        self.last_at = at
        return self._refresh(at)

    def value(self, now: float) -> float | None:
        """The level at ``now``: the cached value unless a sample has aged out since it was computed."""
        if now < self.valid_until:
            return self.level
        return self._refresh(now)

    def _refresh(self, now: float) -> float | None:
        times = self._at
        values = self._rssi
        cutoff = now - self.span_s
        while times and times[0] <= cutoff:
            del times[0]
            del values[0]
        count = len(values)
        if count < self._min_samples:
            self.level = None
            self.valid_until = _UNTIL_NEXT_SAMPLE
            return None
        low = _TRIM[count]
        high = count - low
        self.level = sum(sorted(values)[low:high]) / (high - low)
        self.valid_until = times[0] + self.span_s
        return self.level
