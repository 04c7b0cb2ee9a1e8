"""The in-memory side of replay protection: answers "seen this jti?" without waiting for the disk.

The ledger's jti table is the durable side (claimed before a check-in is acknowledged) and refills this
guard at start, so a token is refused until it expires, across restarts too. Answering from memory lets
the decision go ahead while the claim is being committed: the screen does not wait on an fsync.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class ReplayGuard:
    """jti -> expiry; memory is bounded by (token lifetime x check-in rate) and pruned as tokens expire."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        # Arrival order; tokens live at most max_token_lifetime_s, so the head expires soon enough.
        self._order: deque[tuple[float, str]] = deque()

    def load(self, rows: Iterable[tuple[str, float]]) -> int:
        count = 0
        for jti, exp_wall in sorted(rows, key=lambda row: row[1]):
            self._expiry[jti] = exp_wall
            self._order.append((exp_wall, jti))
            count += 1
        return count

    def claim(self, jti: str, exp_wall: float, now_wall: float) -> bool:
        """True the first time a live jti is seen; False for a replay."""
        known = self._expiry.get(jti)
        if known is not None and known > now_wall:
            return False
        self._expiry[jti] = exp_wall
        self._order.append((exp_wall, jti))
        return True

    def release(self, jti: str) -> None:
        """Forget a claim whose durable write failed, so the redelivered message is not taken for a replay."""
        self._expiry.pop(jti, None)

    def prune(self, now_wall: float) -> int:
        removed = 0
        while self._order and self._order[0][0] <= now_wall:
            exp_wall, jti = self._order.popleft()
            if self._expiry.get(jti) == exp_wall:
                del self._expiry[jti]
                removed += 1
        return removed

    def __len__(self) -> int:
        return len(self._expiry)
