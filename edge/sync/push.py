"""The pusher: outbox -> cloud, in order, each event deleted only after the cloud has answered for it.

peek a batch -> POST it -> on a 200 ack (delete) the whole batch -> repeat while there is a backlog. A crash
anywhere in between resends the batch at the next start; the cloud drops the copies by event id, so a power
cut costs a resend, never a loss or a double count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edge.sync.client import CloudRefusedError
from edge.sync.parse import PushResult

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

log = logging.getLogger(__name__)

# Refusals of a whole request that a smaller one may pass: a broken envelope (400), a body too large (413).
SPLIT_ON = frozenset({400, 413})


class Entry(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def body(self) -> bytes: ...


class OutboxQueue(Protocol):
    async def peek(self, max_events: int, max_bytes: int) -> Sequence[Entry]: ...
    async def ack(self, seqs: Sequence[int]) -> int: ...


class PushClient(Protocol):
    async def push(self, bodies: Sequence[bytes]) -> PushResult: ...


@dataclass(slots=True)
class PushStats:
    batches: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_batch_ms: float = 0.0
    poison: int = 0  # single events the cloud refused even alone, as a whole request


class Pusher:
    """Drains the outbox to the cloud (the service runs ``drain`` in a `RetryLoop`)."""

    def __init__(
        self,
        outbox: OutboxQueue,
        client: PushClient,
        *,
        batch_events: int,
        batch_bytes: int,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self.stats = PushStats()
        # The sync_push stage (one batch: POST -> answer -> outbox ack); None costs one check per batch.
        self.metrics: Metrics | None = None

    async def drain(self) -> int:
        """Push batches until the outbox is empty; returns events acked. Raises on the first failure.

        A batch the cloud refuses as a whole (400 or 413: an envelope it cannot take) is split in halves
        until the one event it cannot take is found; that event is dropped and counted, so a poison event
        never blocks the backlog behind it.
        """
        done = 0
        limit = self._batch_events
        while True:
            batch = await self._outbox.peek(limit, self._batch_bytes)
            if not batch:
                return done
            started = time.perf_counter()
            try:
                result = await self._client.push([entry.body for entry in batch])
            except CloudRefusedError as error:
                if error.status not in SPLIT_ON:
                    raise
                refused = str(error)
            else:
                # The cloud answered for every event of the batch: stored (now or before) or refused for good.
                await self._outbox.ack([entry.seq for entry in batch])
                elapsed = time.perf_counter() - started
                self._count(len(batch), result, elapsed)
                if self.metrics is not None:
                    self.metrics.sync_push.observe(elapsed)
                done += len(batch)
                limit = self._batch_events
                continue
            if len(batch) > 1:
                limit = max(1, len(batch) // 2)
                continue
            log.error(
                "the cloud refuses event %s even alone (%s); dropped and counted", batch[0].seq, refused
            )
            await self._outbox.ack([batch[0].seq])
            self.stats.poison += 1
            done += 1

    def _count(self, sent: int, result: PushResult, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.events_sent += sent
        stats.accepted += result.accepted
        stats.duplicates += result.duplicates
        stats.rejected += len(result.rejected)
        stats.last_batch_ms = seconds * 1000
        if result.rejected:
            index, reason = result.rejected[0]
            log.error(
                "the cloud refused %d events of a batch for good (first: #%d, %s); they are dropped and counted",
                len(result.rejected),
                index,
                reason,
            )
