"""The pusher: outbox -> cloud, in order; an event leaves the outbox only once the cloud answered for it.

peek a batch -> POST it -> settle the well-formed answer: delete what the cloud stored, and handle what it
refused *by name* (a rejection in the answer, with its reason): telemetry goes to the dead letters, privacy
and conversion events are parked (kept, retried alone later, counted, alerted). A whole request's status is
never a verdict on any event (a proxy's 400 is not the cloud's): it shrinks the batch, and isolates an event
that fails alone by parking it, but never gives one up. A crash anywhere resends the batch at the next
start; the cloud drops the copies by event id. See docs/sync.md "Push".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from edge.clock import Clock
from edge.ledger import DeadLetters, OutboxEntry, Refusal
from edge.sync.client import CloudRefusedError
from edge.sync.parse import PushResult
from edge.sync.wire import EventClass

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

log = logging.getLogger(__name__)

# Refusals of a whole request that a smaller one may pass: a broken envelope (400), a body too large (413).
SHRINK_ON: Final = frozenset({400, 413})
TOO_LARGE: Final = 413
# After a 413 the byte budget is halved; after this many good batches it is doubled again (up to the
# configured size), so a proxy's lower body limit costs one refused request per 32 batches, not per batch.
GROW_AFTER: Final = 32
# A parked event is retried alone 1 min after its first refusal, then 2, 4 ... up to an hour: a refusal by
# name cannot pass until the cloud (or the event's producer) is fixed, and hourly costs nothing.
PARK_RETRY_BASE_S: Final = 60.0
PARK_RETRY_MAX_S: Final = 3600.0
# One drain retries at most this many parked events (one request each), so a pile of them never starves
# the live queue behind.
PARKED_PER_DRAIN: Final = 50
_ANY_SIZE: Final = 1 << 62


class OutboxQueue(Protocol):
    async def peek(self, max_events: int, max_bytes: int) -> Sequence[OutboxEntry]: ...
    async def ack(self, seqs: Sequence[int]) -> int: ...


class PushClient(Protocol):
    async def push(self, bodies: Sequence[bytes], ids: Sequence[str]) -> PushResult: ...


@dataclass(slots=True)
class PushStats:
    batches: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # refused by name in a well-formed answer (then given up or parked)
    given_up: int = 0  # telemetry moved to the dead letters
    parked: int = 0  # events parked (a refusal by name of a privacy/conversion event, or failing alone)
    shrunk: int = 0  # whole-request 400/413 answers that made a batch smaller
    last_batch_ms: float = 0.0


def park_delay(attempts: int) -> float:
    """Seconds until attempt ``attempts + 1`` of a parked event."""
    return min(PARK_RETRY_MAX_S, PARK_RETRY_BASE_S * 2.0 ** min(attempts - 1, 16))


class Pusher:
    """Drains the outbox to the cloud (the service runs ``drain`` in a `RetryLoop`)."""

    def __init__(
        self,
        outbox: OutboxQueue,
        refused: DeadLetters,
        client: PushClient,
        clock: Clock,
        *,
        batch_events: int,
        batch_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._outbox = outbox
        self._refused = refused
        self._client = client
        self._clock = clock
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        # The byte budget after a 413 (memory only: a restart simply learns the proxy's limit again).
        self._bytes_cap = batch_bytes
        self._good_streak = 0
        self.stats = PushStats()
        # The sync_push stage (one batch: POST -> answer -> outbox ack); None costs one check per batch.
        self.metrics = metrics

    async def drain(self) -> int:
        """Retry the parked events that are due, then push batches until the outbox holds only parked ones.

        Returns events settled (stored, or refused by name). Raises on the first failure of the path (the
        retry loop backs off); never gives an event up for a whole request's status.
        """
        done = await self._retry_parked()
        limit = self._batch_events
        while True:
            batch = await self._outbox.peek(limit, self._bytes_cap)
            if not batch:
                return done
            try:
                result = await self._send(batch)
            except CloudRefusedError as error:
                if error.status not in SHRINK_ON:
                    raise
                self._shrink(batch, error)
                if len(batch) > 1:
                    limit = max(1, len(batch) // 2)
                    continue
                done += await self._isolate(batch[0], error)
                continue
            done += await self._settle(batch, result)
            limit = self._batch_events
            self._grow()

    async def _send(self, batch: Sequence[OutboxEntry]) -> PushResult:
        started = time.perf_counter()  # a metric, not a decision: the injected clock does not apply
        result = await self._client.push([entry.body for entry in batch], [entry.event_id for entry in batch])
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.batches += 1
        stats.events_sent += len(batch)
        stats.accepted += result.accepted
        stats.duplicates += result.duplicates
        stats.rejected += len(result.rejected)
        stats.last_batch_ms = elapsed * 1000
        if self.metrics is not None:
            self.metrics.sync_push.observe(elapsed)
        return result

    async def _settle(self, batch: Sequence[OutboxEntry], result: PushResult) -> int:
        """Apply a well-formed answer: every event of ``batch`` is stored, or refused by name."""
        if not result.rejected:
            await self._outbox.ack([entry.seq for entry in batch])
            return len(batch)
        refused = dict(result.rejected)
        acked = [entry.seq for index, entry in enumerate(batch) if index not in refused]
        refusals = [
            Refusal(batch[index], f"rejected by the cloud: {reason}") for index, reason in refused.items()
        ]
        # Telemetry may be given up for a refusal by name; privacy and conversion events never are.
        give_up = [refusal for refusal in refusals if refusal.entry.cls is EventClass.TELEMETRY]
        park = [refusal for refusal in refusals if refusal.entry.cls is not EventClass.TELEMETRY]
        await self._refused.settle(
            acked, give_up=give_up, park=park, now_wall=self._clock.wall(), retry_in=park_delay
        )
        self.stats.given_up += len(give_up)
        self.stats.parked += len(park)
        first = refusals[0]
        log.error(
            "the cloud refused %d events by name (first: %s %s, %s): %d telemetry dead-lettered, %d parked",
            len(refusals),
            first.entry.kind,
            first.entry.event_id,
            first.reason,
            len(give_up),
            len(park),
        )
        return len(acked) + len(give_up)

    async def _isolate(self, entry: OutboxEntry, error: CloudRefusedError) -> int:
        """``entry`` was refused alone as a whole request: is it the event, or the path to the cloud?

        ``entry`` is sent alone once more first: a fault that ended meanwhile (a proxy fixed) then costs
        nothing, and the queue keeps its order. If it is refused again, the next event is sent alone: if
        that is refused too, the path refuses everything (a proxy, a WAF, a broken ingress): nothing is
        parked, and ``error`` goes to the retry loop to back off. If it passes, ``entry`` gets one last
        try, and is parked (kept, retried later) if still refused; the queue flows on.
        """
        try:
            return await self._settle([entry], await self._send([entry]))
        except CloudRefusedError as again:
            if again.status not in SHRINK_ON:
                raise
        # Any size: the next event goes alone, and a byte budget below ``entry`` must not hide it.
        following = [other for other in await self._outbox.peek(2, _ANY_SIZE) if other.seq != entry.seq]
        if not following:
            raise error  # nothing to tell the event from the path with: wait for the next drain
        try:
            result = await self._send(following[:1])
        except CloudRefusedError as again:
            if again.status in SHRINK_ON:
                raise error from None
            raise
        done = await self._settle(following[:1], result)
        # The path passes events now; once more for ``entry``, so a fault that ended just before the probe
        # does not park an event that would pass.
        return done + await self._alone(entry)

    async def _retry_parked(self) -> int:
        now = self._clock.wall()
        due = await self._refused.due(now, limit=PARKED_PER_DRAIN, latest_wall=now + PARK_RETRY_MAX_S)
        done = 0
        for entry in due:
            done += await self._alone(entry)
        return done

    async def _alone(self, entry: OutboxEntry) -> int:
        """Send ``entry`` by itself: settled by the answer, or parked if refused as a whole (400/413)."""
        try:
            result = await self._send([entry])
        except CloudRefusedError as error:
            if error.status not in SHRINK_ON:
                raise
            await self._park(entry, error)
            return 0
        return await self._settle([entry], result)

    async def _park(self, entry: OutboxEntry, error: CloudRefusedError) -> None:
        reason = f"HTTP {error.status} for this event alone: {error.detail}"[:300]
        await self._refused.settle(
            (), park=[Refusal(entry, reason)], now_wall=self._clock.wall(), retry_in=park_delay
        )
        self.stats.parked += 1
        log.error("event %s (%s, %s) parked: %s", entry.event_id, entry.kind, entry.cls.wire, reason)

    def _shrink(self, batch: Sequence[OutboxEntry], error: CloudRefusedError) -> None:
        self.stats.shrunk += 1
        self._good_streak = 0
        if error.status == TOO_LARGE:
            sent = sum(len(entry.body) for entry in batch)
            self._bytes_cap = max(1, min(self._bytes_cap, sent) // 2)

    def _grow(self) -> None:
        if self._bytes_cap >= self._batch_bytes:
            return
        self._good_streak += 1
        if self._good_streak >= GROW_AFTER:
            self._bytes_cap = min(self._batch_bytes, self._bytes_cap * 2)
            self._good_streak = 0
