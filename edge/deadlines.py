"""One deadline per key, soonest first: timer work that costs what is due, not everything that is waiting.

The display board keeps each screen's next timer here, check-in presence each stay's last check-in, so a
100 ms tick over 1,000 screens or 100,000 stays looks only at the few whose time has come.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# Moving a key's deadline leaves its old heap entry behind until it comes up; once the heap holds this many
# times more entries than there are keys, it is rebuilt from the keys (linear, so paid rarely: amortised
# O(1) per change) and memory stays proportional to the keys.
HEAP_SLACK: Final = 2
# Below this many entries a rebuild is not worth it.
HEAP_MIN_COMPACT: Final = 256


class Deadlines(Generic[K]):
    """The current deadline of each key in a min-heap; setting one is O(log n), taking the due ones
    O(k log n) for k due (superseded entries are skipped as they come up)."""

    def __init__(self) -> None:
        self._at: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        # Ties leave in the order they were set; keys themselves are never compared.
        self._sequence = itertools.count()

    def set(self, key: K, at: float | None) -> None:
        """``key``'s deadline is now ``at``; None: it has none."""
        if at is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, next(self._sequence), key))
        if len(self._heap) > max(HEAP_MIN_COMPACT, HEAP_SLACK * len(self._at)):
            self._heap = [(when, next(self._sequence), k) for k, when in self._at.items()]
            heapq.heapify(self._heap)

    def get(self, key: K) -> float | None:
        return self._at.get(key)

    def take(self, due: Callable[[float], bool]) -> list[K]:
        """Remove and return the keys whose deadline satisfies ``due``, soonest first.

        ``due`` must hold for every deadline up to some point and for none after it (``at <= now``,
        ``now - at >= timeout``): the search stops at the first deadline that is not due.
        """
        taken = []
        heap, current = self._heap, self._at
        while heap and due(heap[0][0]):
            at, _, key = heapq.heappop(heap)
            if current.get(key) == at:
                del current[key]
                taken.append(key)
        return taken

    def __len__(self) -> int:
        return len(self._at)
