"""The in-memory side of replay protection: answers "seen this jti?" without waiting for the disk.

The ledger's jti table is the durable side: a check-in's claim commits with its decisions, before the
message is acknowledged, and refills this guard at start, so a token is refused as long as it could still
verify, across restarts too. A claim is kept until ``replay_until`` (the token's ``exp`` plus the
verifier's leeway): until then the verifier would accept the token, so the claim must still be there.

Claims are forgotten (here by ``prune``, on disk by the ledger's purge) once the clock passes them, and
the highest such point is the ``floor``: a token whose claim would have ended at or below it may have been
used and forgotten, so it is refused. In normal operation the verifier refuses such a token anyway (it
has expired); the floor matters when the wall clock steps back (a Pi without a real-time clock restoring
an old time after a power cut), where it keeps a forgotten jti from being accepted a second time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from enum import StrEnum


class Claim(StrEnum):
    NEW = "new"
    SEEN = "seen"  # claimed and not yet expired: a replay (or the broker's redelivery)
    CLOCK_BEHIND = "clock_behind"  # its claim may have been forgotten already: refused, never reused


class ReplayGuard:
    """jti -> replay_until; memory is bounded by (token lifetime x check-in rate), pruned as claims end."""

    def __init__(self, *, floor_wall: float = float("-inf")) -> None:
        self._until: dict[str, float] = {}
        # Arrival order; tokens live at most max_token_lifetime_s, so the head ends soon enough.
        self._order: deque[tuple[float, str]] = deque()
        self._floor = floor_wall

    @property
    def floor_wall(self) -> float:
        """Claims ending at or before this point may have been forgotten (here or on disk)."""
        return self._floor

    def raise_floor(self, floor_wall: float) -> None:
        """The ledger's purge forgot claims up to ``floor_wall``."""
        self._floor = max(self._floor, floor_wall)

    def load(self, rows: Iterable[tuple[str, float]]) -> int:
        count = 0
        for jti, until_wall in sorted(rows, key=lambda row: row[1]):
            self._until[jti] = until_wall
            self._order.append((until_wall, jti))
            count += 1
        return count

    def claim(self, jti: str, until_wall: float, now_wall: float) -> Claim:
        """NEW the first time a live jti is seen (and it is remembered until ``until_wall``)."""
        if until_wall <= self._floor:
            return Claim.CLOCK_BEHIND
        known = self._until.get(jti)
        if known is not None and known > now_wall:
            return Claim.SEEN
        self._until[jti] = until_wall
        self._order.append((until_wall, jti))
        return Claim.NEW

    def release(self, jti: str) -> None:
        """Forget a claim whose durable write failed, so the redelivered message is not taken for a replay."""
        self._until.pop(jti, None)

    def prune(self, now_wall: float) -> int:
        removed = 0
        while self._order and self._order[0][0] <= now_wall:
            until_wall, jti = self._order.popleft()
            if self._until.get(jti) == until_wall:
                del self._until[jti]
                removed += 1
            self._floor = max(self._floor, until_wall)
        return removed

    def __len__(self) -> int:
        return len(self._until)
