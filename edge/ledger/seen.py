"""``ledger.seen``: when each shopper was last seen at this store, the clock the profile eviction runs by.

Noting a visit is on the check-in path, so it costs a dictionary lookup there: a shopper's mark is written at
most once per ``SEEN_EVERY_S``, and the marks wait in memory for the next ``flush`` (the daemon's purge
loop) or purge, one statement for all of them, never forced to disk. A mark lost to a power cut only moves
that shopper's eviction earlier; their next visit fetches the profile again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.clock import Clock
from edge.ledger.retention import SEEN_WRITE_STEP, SeenMark, record_seen
from edge.ledger.writer import Read, Submit

# Eviction counts in days, so an hour's precision costs it nothing, and a regular's visit costs one row
# write per hour instead of one per check-in, sale and BLE enter.
SEEN_EVERY_S: Final = 3_600.0
# Shoppers whose last mark is remembered (not to write it again within the hour). A store sees a few
# thousand identified shoppers an hour; past this (a soak of new shoppers) the oldest are forgotten first,
# which costs one more write each, never a lost mark. ~150 bytes an entry: ~1.5 MB at most.
NOTED_MAX: Final = 10_000
# Marks waiting for a write. The daemon flushes every few seconds (a busy store notes ~200 a second at
# most); past the bound a new mark is dropped and counted: that shopper's next visit notes it again.
PENDING_MAX: Final = 10_000


@dataclass(slots=True, frozen=True)
class SeenStats:
    noted: int  # visits noted (before the hourly thinning)
    written: int  # marks written to the ledger
    dropped: int  # marks dropped for want of room (PENDING_MAX)
    pending: int


class SeenMarks:
    """Notes visits in memory and writes them in batches through the ledger's single writer."""

    def __init__(self, submit: Submit, read: Read, clock: Clock, *, every_s: float = SEEN_EVERY_S) -> None:
        self._submit = submit
        self._read = read
        self._clock = clock
        self._every_s = every_s
        self._noted: dict[str, float] = {}  # shopper -> wall of their last mark, written or pending
        self._pending: dict[str, float] = {}
        self._counts = {"noted": 0, "written": 0, "dropped": 0}

    def note(self, shopper_id: str) -> None:
        """The shopper was here now (a check-in, a sale with their token, a BLE enter, a fetch). O(1)."""
        now = self._clock.wall()
        self._counts["noted"] += 1
        last = self._noted.get(shopper_id)
        if last is not None and 0.0 <= now - last < self._every_s:
            return
        if shopper_id not in self._pending and len(self._pending) >= PENDING_MAX:
            self._counts["dropped"] += 1
            return
        self._noted.pop(shopper_id, None)  # to the end: the oldest marks are forgotten first
        self._noted[shopper_id] = now
        self._pending[shopper_id] = now
        if len(self._noted) > NOTED_MAX:
            del self._noted[next(iter(self._noted))]

    def take(self) -> list[SeenMark]:
        """The pending marks, handed over for a write (``restore`` them if it fails)."""
        pending, self._pending = self._pending, {}
        return list(pending.items())

    def restore(self, marks: list[SeenMark]) -> None:
        """A write of ``marks`` failed: they wait for the next one (newer marks of the same shopper win)."""
        for shopper_id, wall in marks:
            self._pending.setdefault(shopper_id, wall)

    def written(self, count: int) -> None:
        self._counts["written"] += count
        # Marks older than the hour may be written again: memory holds one hour of shoppers, not all.
        floor = self._clock.wall() - self._every_s
        for shopper_id in [shopper for shopper, wall in self._noted.items() if wall < floor]:
            del self._noted[shopper_id]

    async def flush(self) -> int:
        """Write the pending marks (``SEEN_WRITE_STEP`` a writer op, not forced to disk); returns how many
        were written (a mark of an erased shopper is not)."""
        marks = self.take()
        written = 0
        for start in range(0, len(marks), SEEN_WRITE_STEP):
            step = marks[start : start + SEEN_WRITE_STEP]
            try:
                written += await self._submit(record_seen(step), durable=False)
            except BaseException:
                self.restore(marks[start:])
                raise
        self.written(written)
        return written

    def forget(self, shopper_id: str) -> None:
        """An erased shopper: no mark of theirs is left in memory (the write refuses them anyway)."""
        self._noted.pop(shopper_id, None)
        self._pending.pop(shopper_id, None)

    async def last_seen(self, shopper_id: str) -> float | None:
        """When the ledger last recorded the shopper here (pending marks not included), or None."""
        rows = await self._read("SELECT seen_wall FROM shopper_seen WHERE shopper_id = ?", (shopper_id,))
        return float(rows[0][0]) if rows else None

    def stats(self) -> SeenStats:
        counts = self._counts
        return SeenStats(counts["noted"], counts["written"], counts["dropped"], len(self._pending))
