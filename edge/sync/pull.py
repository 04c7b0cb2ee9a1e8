"""The puller: cloud changes since our cursor -> one ledger transaction per page (with the cursor) -> memory.

A page is applied completely with its cursor or not at all, so a crash or power cut leaves the cursor
consistent with what is on disk: the next pull asks again from there, and applying a change twice is harmless.
A cursor reset rebuilds the replica from the cloud's full state (edge/ledger/rebuild.py): what the cloud
no longer has is removed at the rebuild's last page, from disk and then from memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge.ledger import ApplyResult
from edge.sync.client import CloudRefusedError
from edge.sync.mirror import Mirror
from edge.sync.parse import Page
from edge.sync.wire import Change

log = logging.getLogger(__name__)

# 410 cursor_reset: our cursor comes from another database (docs/sync-openapi.yaml).
CURSOR_RESET = 410


class Replica(Protocol):
    async def cursor(self) -> str | None: ...
    async def apply_page(self, changes: Sequence[Change], cursor: str, *, complete: bool) -> ApplyResult: ...
    async def begin_rebuild(self) -> None: ...
    async def scrub(self) -> None: ...


class PullClient(Protocol):
    async def pull(self, cursor: str | None, limit: int) -> Page: ...


@dataclass(slots=True)
class PullStats:
    pages: int = 0
    changes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    cursor: str | None = None
    resets: int = 0
    rebuilds: int = 0  # rebuilds completed (the sweep ran)
    swept: Counter[str] = field(default_factory=Counter)  # rows the rebuilds removed, by table


class Puller:
    def __init__(
        self,
        replica: Replica,
        client: PullClient,
        mirror: Mirror,
        *,
        page_limit: int,
        on_reset: Callable[[], None] = lambda: None,
    ) -> None:
        self._replica = replica
        self._client = client
        self._mirror = mirror
        self._page_limit = page_limit
        # Told when a rebuild starts: caches of the old cloud (fetched profiles, unknown shoppers) go.
        self._on_reset = on_reset
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
                # The cloud's database is not the one our cursor came from (restored, replaced): rebuild from
                # its full state. Until the last page the old state keeps serving; then what is gone goes.
                log.warning(
                    "the cloud no longer knows our cursor (%s); rebuilding from its full state", error
                )
                self.stats.resets += 1
                await self._replica.begin_rebuild()
                self._on_reset()
                cursor = None
                continue
            result = await self._replica.apply_page(page.changes, page.cursor, complete=not page.more)
            # Durable with the cursor from here on; now every stage sees it.
            self._mirror.apply(page.changes)
            if result.dropped:
                self._mirror.drop(result.dropped)
            if result.erased:
                # After memory let go: the erased rows leave the WAL and the file's free pages too.
                await self._replica.scrub()
            if result.swept is not None:
                self._mirror.sweep(result.swept)
                self.stats.rebuilds += 1
                self.stats.swept.update(result.swept.counts())
                log.warning("rebuild after a cursor reset complete; removed %s", result.swept.counts())
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
