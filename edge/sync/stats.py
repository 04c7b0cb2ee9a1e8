"""The sync's health snapshot (``gateway/health`` → ``sync``): the outbox, push and pull counters with their
loops' failures, the events the cloud refused, and the profile fetches; built by ``SyncService.stats``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge.ledger.deadletter import DeadLetterStats, ParkedStats
from edge.ledger.outbox import OutboxStats
from edge.sync.profiles import ProfileStats


@dataclass(slots=True, frozen=True)
class PushHealth:
    batches: int  # batches the cloud answered for
    events: int  # events sent
    accepted: int
    duplicates: int
    rejected: int  # refused by name (then given up or parked)
    given_up: int  # telemetry moved to the dead letters
    parked: int
    shrunk: int  # whole-request 400/413 answers that made a batch smaller
    failures: Mapping[str, int]  # failed requests by kind
    retry_after: int  # waits a Retry-After header set
    last_delay_s: float
    last_success_age_s: float | None


@dataclass(slots=True, frozen=True)
class PullHealth:
    pages: int
    changes: int
    rejected: Mapping[str, int]  # malformed changes skipped, by reason
    failures: Mapping[str, int]  # failed requests by kind
    cursor: str | None
    resets: int
    rebuilds: int
    swept: Mapping[str, int]  # rows the rebuilds removed, by table
    last_success_age_s: float | None


@dataclass(slots=True, frozen=True)
class SyncStats:
    cloud_down: bool
    outbox: OutboxStats
    push: PushHealth
    parked: ParkedStats
    dead_letter: DeadLetterStats
    pull: PullHealth
    profiles: ProfileStats

    @property
    def backlog(self) -> int:
        """Events in the outbox the cloud has not acknowledged yet."""
        return self.outbox.events
