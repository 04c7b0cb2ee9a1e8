"""Events the cloud refused one by one: parked in the outbox and retried, or given up into the dead letters.

Owns ``outbox_parked`` and ``dead_letter`` (docs/ledger.md "Refused events"). Only the pusher decides what
is parked or given up (docs/sync.md); this module keeps it durable, counts it, and reads it back for health
and for ``edge-gateway dead-letter``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge.ledger.outbox import ENTRY_COLUMNS, OutboxEntry, outbox_entry
from edge.ledger.readonly import read_only
from edge.ledger.writer import Op, Read, Submit, Tx
from edge.sync.wire import EventClass

# ~500 bytes an event: ~10 MB at most. The first thousands already show what the cloud objects to; a cloud
# that refuses everything for weeks must not fill a store's SD card. The oldest go first, counted.
DEAD_LETTER_MAX_EVENTS: Final = 20_000

_PARKED_COLUMNS: Final = ", ".join(f"o.{column}" for column in ENTRY_COLUMNS.split(", "))


@dataclass(slots=True, frozen=True)
class Refusal:
    """One event the cloud refused, and the reason to keep with it."""

    entry: OutboxEntry
    reason: str


@dataclass(slots=True, frozen=True)
class ParkedStats:
    """Events the cloud refused that are kept and retried: how many, by class, and the oldest one's age."""

    events: int
    by_class: Mapping[str, int]  # every class, 0 included
    oldest_age_s: float | None


@dataclass(slots=True, frozen=True)
class DeadLetterStats:
    """Telemetry given up: held in the table, ever given up, evicted at the bound, and the last one's age."""

    events: int
    given_up: int
    evicted: int
    last_age_s: float | None


@dataclass(slots=True, frozen=True)
class RefusedStats:
    parked: ParkedStats
    dead_letter: DeadLetterStats


@dataclass(slots=True, frozen=True)
class RefusedRecord:
    """A dead letter or a parked event, as ``edge-gateway dead-letter`` shows it."""

    state: str  # "dead" or "parked"
    event_id: str
    cls: str
    kind: str
    reason: str
    since_wall: float  # given up, or first parked
    attempts: int
    next_wall: float | None
    event: dict[str, Any]  # the wire Event, as it was (or would be) pushed

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "id": self.event_id,
            "class": self.cls,
            "kind": self.kind,
            "reason": self.reason,
            "since": self.since_wall,
            "attempts": self.attempts,
            "next_attempt": self.next_wall,
            "event": self.event,
        }


def settle_op(
    acked: Sequence[int],
    give_up: Sequence[Refusal],
    park: Sequence[Refusal],
    now_wall: float,
    retry_in: Callable[[int], float],
) -> Op[int]:
    """One transaction for one push answer: delete what the cloud stored, dead-letter ``give_up``, and
    park ``park`` (attempt n is retried ``retry_in(n)`` seconds from now). Returns events parked."""
    acked_json = json.dumps([int(seq) for seq in acked])

    def run(tx: Tx) -> int:
        if acked:
            tx.execute("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?))", (acked_json,))
        for refusal in give_up:
            _give_up(tx, refusal, now_wall)
        if give_up:
            # seq is AUTOINCREMENT: everything more than the bound below the newest is the oldest surplus.
            tx.execute(
                "DELETE FROM dead_letter WHERE seq <= (SELECT MAX(seq) FROM dead_letter) - ?",
                (DEAD_LETTER_MAX_EVENTS,),
            )
        parked = 0
        for refusal in park:
            parked += _park(tx, refusal, now_wall, retry_in)
        return parked

    return run


def _give_up(tx: Tx, refusal: Refusal, now_wall: float) -> None:
    seq = refusal.entry.seq
    # From the outbox row itself, inside the transaction: an erasure may have anonymised it since the peek.
    # A dead letter keeps the wire event as pushed (compact JSON): it is exported as it is, and few.
    rows = tx.fetch(f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE seq = ?", (seq,))  # noqa: S608
    if not rows:
        return
    entry = outbox_entry(rows[0])
    tx.execute(
        "INSERT INTO dead_letter (event_id, class, kind, at_wall, shopper_id, body, reason, given_up_wall) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        (
            entry.event_id,
            int(entry.cls),
            entry.kind,
            int(rows[0][4]) / 1000.0,
            entry.shopper_id,
            entry.body,
            refusal.reason,
            now_wall,
        ),
    )
    tx.execute("DELETE FROM outbox WHERE seq = ?", (seq,))


def _park(tx: Tx, refusal: Refusal, now_wall: float, retry_in: Callable[[int], float]) -> int:
    seq = refusal.entry.seq
    rows = tx.fetch("SELECT attempts FROM outbox_parked WHERE seq = ?", (seq,))
    attempts = (int(rows[0][0]) if rows else 0) + 1
    # Only while the event is still queued (an erasure or the byte bound may have taken it meanwhile).
    changed = tx.returning(
        "INSERT INTO outbox_parked (seq, reason, attempts, parked_wall, next_wall) "
        "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM outbox WHERE seq = ?) "
        "ON CONFLICT (seq) DO UPDATE SET reason = excluded.reason, attempts = excluded.attempts, "
        "next_wall = excluded.next_wall RETURNING 1",
        (seq, refusal.reason, attempts, now_wall, now_wall + retry_in(attempts), seq),
    )
    return len(changed)


def anonymise_dead_letters(tx: Tx, shopper_id: str) -> int:
    """An erased shopper's id leaves the dead letters too (their events stay, anonymous, as in the outbox)."""
    return tx.execute(
        "UPDATE dead_letter SET shopper_id = NULL, "
        "body = CAST(json_set(CAST(body AS TEXT), '$.shopper_id', NULL) AS BLOB) WHERE shopper_id = ?",
        (shopper_id,),
    )


class DeadLetters:
    """``ledger.dead_letters``: settle a push answer, find parked events due, and count both for health.

    Shares the ledger's single writer (every write commits before it returns) and its read lock.
    """

    def __init__(self, submit: Submit, read: Read) -> None:
        self._submit = submit
        self._read = read

    async def settle(
        self,
        acked: Sequence[int],
        *,
        give_up: Sequence[Refusal] = (),
        park: Sequence[Refusal] = (),
        now_wall: float,
        retry_in: Callable[[int], float],
    ) -> int:
        """Apply one push answer durably (see ``settle_op``); returns how many events are parked by it."""
        return await self._submit(settle_op(acked, give_up, park, now_wall, retry_in))

    async def due(self, now_wall: float, *, limit: int, latest_wall: float) -> list[OutboxEntry]:
        """Parked events whose next attempt is due, oldest first.

        An event whose next attempt is after ``latest_wall`` (further ahead than any delay we set: the wall
        clock stepped back since) is due too, so a clock set back a year cannot hold an event for a year.
        """
        rows = await self._read(
            f"SELECT {_PARKED_COLUMNS} FROM outbox_parked p JOIN outbox o ON o.seq = p.seq "  # noqa: S608
            "WHERE p.next_wall <= ? OR p.next_wall > ? ORDER BY o.seq LIMIT ?",
            (now_wall, latest_wall, limit),
        )
        return [outbox_entry(row) for row in rows]

    async def stats(self, now_wall: float) -> RefusedStats:
        """Parked events by class (and the oldest's age), dead letters held, given up and evicted."""
        parked_rows = await self._read(
            "SELECT o.class, COUNT(*), MIN(p.parked_wall) FROM outbox_parked p "
            "JOIN outbox o ON o.seq = p.seq GROUP BY o.class"
        )
        by_class = {cls.wire: 0 for cls in EventClass}
        oldest: float | None = None
        for cls, count, parked_wall in parked_rows:
            by_class[EventClass(cls).wire] = int(count)
            oldest = float(parked_wall) if oldest is None else min(oldest, float(parked_wall))
        (events, given_up, evicted, last), *_ = await self._read(
            "SELECT events, given_up, evicted, (SELECT given_up_wall FROM dead_letter ORDER BY seq DESC LIMIT 1) "
            "FROM dead_letter_totals"
        )
        return RefusedStats(
            parked=ParkedStats(
                events=sum(by_class.values()),
                by_class=by_class,
                oldest_age_s=None if oldest is None else round(max(0.0, now_wall - oldest), 1),
            ),
            dead_letter=DeadLetterStats(
                events=int(events),
                given_up=int(given_up),
                evicted=int(evicted),
                last_age_s=None if last is None else round(max(0.0, now_wall - float(last)), 1),
            ),
        )


def read_refused(path: Path, *, parked: bool = False) -> Iterator[RefusedRecord]:
    """The dead letters (or, with ``parked``, the parked events) of the ledger at ``path``, oldest first.

    Opens the file read-only, beside a running gateway (WAL lets a reader in without blocking its writer);
    used by ``edge-gateway dead-letter``.
    """
    with read_only(path) as db:
        if parked:
            rows = (
                (outbox_entry(row[:7]), *row[7:])
                for row in db.execute(
                    f"SELECT {_PARKED_COLUMNS}, p.reason, p.parked_wall, p.attempts, p.next_wall "  # noqa: S608
                    "FROM outbox_parked p JOIN outbox o ON o.seq = p.seq ORDER BY o.seq"
                )
            )
        else:
            rows = (
                (OutboxEntry(seq, str(event_id), EventClass(cls), str(kind), shopper_id, body), *rest)
                for seq, event_id, cls, kind, shopper_id, body, *rest in db.execute(
                    "SELECT seq, event_id, class, kind, shopper_id, body, reason, given_up_wall, 1, NULL "
                    "FROM dead_letter ORDER BY seq"
                )
            )
        for entry, reason, since, attempts, next_wall in rows:
            yield RefusedRecord(
                state="parked" if parked else "dead",
                event_id=entry.event_id,
                cls=entry.cls.wire,
                kind=entry.kind,
                reason=str(reason),
                since_wall=float(since),
                attempts=int(attempts),
                next_wall=None if next_wall is None else float(next_wall),
                event=json.loads(entry.body),
            )
