"""The puller: cloud changes since our cursor -> one ledger transaction per page (with the cursor) -> memory.

A page is applied completely with its cursor or not at all, so a crash or power cut leaves the cursor
consistent with what is on disk: the next pull asks again from there, and applying a change twice is harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.sync.client import CloudRefusedError
from edge.sync.mirror import Mirror
from edge.sync.parse import Page
from edge.sync.wire import Change

log = logging.getLogger(__name__)

# 410 cursor_reset: our cursor comes from another database (docs/sync-openapi.yaml).
CURSOR_RESET = 410


class Replica(Protocol):
    async def cursor(self) -> str | None: ...
    async def apply_page(self, changes: Sequence[Change], cursor: str) -> Any: ...


class PullClient(Protocol):
    async def pull(self, cursor: str | None, limit: int) -> Page: ...


@dataclass(slots=True)
class PullStats:
    pages: int = 0
    changes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    cursor: str | None = None
    resets: int = 0


class Puller:
    def __init__(
        self,
        replica: Replica,
        client: PullClient,
        mirror: Mirror,
        *,
        page_limit: int,
    ) -> None:
        self._replica = replica
        self._client = client
        self._mirror = mirror
        self._page_limit = page_limit
        self.stats = PullStats()

    async def pull(self) -> int:
        """Pull and apply pages until the cloud has no more; returns changes applied. Raises on failure."""
        applied = 0
        cursor = await self._replica.cursor()
        while True:
            try:
                page = await self._client.pull(cursor, self._page_limit)
            except CloudRefusedError as error:
                if error.status != CURSOR_RESET or cursor is None:
                    raise
                # The cloud's database is not the one our cursor came from (restored, replaced): start over.
                # Every change is an idempotent upsert or delete, so pulling everything again is safe.
                log.warning("the cloud no longer knows our cursor (%s); pulling everything again", error)
                self.stats.resets += 1
                cursor = None
                continue
            await self._replica.apply_page(page.changes, page.cursor)
            # Durable with the cursor from here on; now every stage sees it.
            self._mirror.apply(page.changes)
            self.stats.pages += 1
            self.stats.changes += len(page.changes)
            self.stats.rejected.update(page.rejected)
            if page.rejected:
                log.error(
                    "skipped %d invalid cloud changes: %s", sum(page.rejected.values()), dict(page.rejected)
                )
            applied += len(page.changes)
            cursor = self.stats.cursor = page.cursor
            if not page.more:
                return applied
