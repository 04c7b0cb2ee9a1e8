"""The durable outbox to the cloud: events encoded once, a byte bound that drops telemetry first, peek/ack.

Events are written by ledger ops inside the transaction of the row they describe (``insert_event``), or by
producers outside the ledger through ``Outbox.enqueue``; rows are stored compact (edge/ledger/eventcodec.py)
and turned back into the exact wire event at peek. See docs/ledger.md "Outbox".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from edge.clock import Clock
from edge.ledger.eventcodec import (
    VERBATIM,
    encode_data,
    pack_id,
    pack_kind,
    row_wire,
    unpack_id,
    unpack_kind,
    verbatim,
    wire,
    wire_string,
)
from edge.ledger.typedjson import wall_ms
from edge.ledger.writer import Op, Read, Submit, Tx
from edge.sync.wire import EventClass

_LOGGER = logging.getLogger(__name__)

# Fixed forever: a deterministic event id hashes this prefix and the row's own key, which is what makes a
# redelivered write never produce a second event, across restarts and gateway versions.
_ID_PREFIX: Final = b"edge-gateway/outbox/v1:"
_MILLIS_MASK: Final = (1 << 48) - 1
_RAND_A_MASK: Final = (1 << 12) - 1
_RAND_B_MASK: Final = (1 << 62) - 1
# How many of the oldest telemetry rows one read looks at when room must be made; events are of similar
# size, so one row is the usual need and a larger bound than 32 would only read rows that stay.
_DROP_SCAN: Final = 32

# EventClass by its stored value: a tuple index is ~10x cheaper than the enum call, 500 times per peek.
_CLASSES: Final = tuple(sorted(EventClass))

EnqueueOutcome = Literal["queued", "duplicate", "dropped", "disabled"]

# A stored row as ``outbox_entry`` reads it.
ENTRY_COLUMNS: Final = "seq, event_id, class, kind, at_ms, shopper_id, data"
_INSERT_WITHIN_BOUND: Final = (
    "INSERT INTO outbox (event_id, class, kind, at_ms, shopper_id, bytes, data) "
    "SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT SUM(bytes) FROM outbox_totals) <= ? "
    "ON CONFLICT (event_id) DO NOTHING RETURNING seq"
)
_INSERT: Final = (
    "INSERT INTO outbox (event_id, class, kind, at_ms, shopper_id, bytes, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def event_id_for(at_wall: float, key: str | None = None) -> str:
    """An event id in the UUIDv7 layout: 48-bit unix ms of ``at_wall``, then 74 bits of sha256(key).

    With a ``key`` (the row's own, e.g. ``"decision:" + decision_id``) the id is deterministic, so the same
    row always makes the same event; without one the 74 bits are random. Time first is what keeps the
    outbox's unique index on event_id append-only and its acks contiguous: random ids (uuid4, uuid5)
    scatter both over the whole index, and a drain step cost 2x (docs/benchmarks.md, outbox_disk).
    """
    tail = hashlib.sha256(_ID_PREFIX + key.encode()).digest() if key is not None else os.urandom(10)
    bits = int.from_bytes(tail[:10], "big")  # 80 bits, 74 used
    value = (
        ((int(at_wall * 1000) & _MILLIS_MASK) << 80)
        | (0x7 << 76)
        | (((bits >> 62) & _RAND_A_MASK) << 64)
        | (0b10 << 62)
        | (bits & _RAND_B_MASK)
    )
    return str(uuid.UUID(int=value))


@dataclass(slots=True, frozen=True)
class NewEvent:
    """An event encoded for the outbox: ``body`` is the wire Event (docs/sync.md) as compact UTF-8 JSON,
    ``data`` its ``data`` as stored (``eventcodec.encode_data``), ``at_ms`` the ``at`` it shows."""

    event_id: str
    cls: EventClass
    kind: str
    at_ms: int
    shopper_id: str | None
    body: bytes
    data: bytes

    def row(self) -> tuple[bytes | str, int, int | str, int, str | None, int, bytes]:
        """The ``outbox`` columns ``event_id, class, kind, at_ms, shopper_id, bytes, data``."""
        return (
            pack_id(self.event_id),
            int(self.cls),
            pack_kind(self.kind),
            self.at_ms,
            self.shopper_id,
            len(self.body),
            self.data,
        )


@dataclass(slots=True, frozen=True)
class ClassStats:
    """One event class in the outbox: waiting events, their bytes, and how many the byte bound dropped."""

    events: int
    bytes: int
    dropped: int


@dataclass(slots=True, frozen=True)
class OutboxStats:
    """A snapshot for gateway/health (``sync.outbox``): totals, the bound, the head's age, per class."""

    events: int
    bytes: int
    max_bytes: int | None
    over_bound: bool  # never-dropped events alone exceed the bound (telemetry is already gone)
    dropped: int
    oldest_age_s: float  # the age of the head of the queue: how far behind the cloud is
    by_class: Mapping[str, ClassStats]


@dataclass(slots=True, frozen=True)
class OutboxEntry:
    """One queued event, in ``seq`` order; ``body`` is ready to splice into a push batch."""

    seq: int
    event_id: str
    cls: EventClass
    kind: str
    shopper_id: str | None
    body: bytes


def outbox_entry(row: Sequence[Any]) -> OutboxEntry:
    """An entry from a row of ``ENTRY_COLUMNS``: the stored form back into the exact wire event."""
    seq, stored_id, cls, stored_kind, at_ms, shopper_id, data = row[:7]
    event_id = unpack_id(stored_id)
    kind = unpack_kind(stored_kind)
    event_class = _CLASSES[cls]
    body = row_wire(event_id, kind, event_class, at_ms, shopper_id, data)
    return OutboxEntry(seq, event_id, event_class, kind, shopper_id, body)


def encode_event(
    kind: str,
    cls: EventClass,
    data: dict[str, Any],
    *,
    at_wall: float,
    shopper_id: str | None = None,
    event_id: str | None = None,
) -> NewEvent:
    """Encode the wire Event once; a value JSON cannot hold (NaN, an object) raises here, in the caller."""
    event_id = event_id if event_id is not None else event_id_for(at_wall)
    cls = EventClass(cls)
    data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    at_ms = wall_ms(at_wall)
    body = wire(event_id, kind, cls, at_ms, shopper_id, data_json)
    return NewEvent(event_id, cls, kind, at_ms, shopper_id, body, encode_data(data_json, at_ms))


def insert_event(tx: Tx, event: NewEvent, max_bytes: int | None) -> EnqueueOutcome:
    """Queue ``event`` inside the open transaction, keeping the queue within ``max_bytes`` if it can.

    ``max_bytes`` None: no cloud sync is configured, so nothing is queued ("disabled").

    Over the bound, the oldest telemetry goes first until the new event fits; a telemetry event that cannot
    fit even then is dropped itself. Conversion and privacy events are never dropped: they are queued even
    if the bound is then exceeded. Every drop is counted in ``outbox_totals.dropped``.
    """
    if max_bytes is None:
        return "disabled"
    size = len(event.body)
    row = event.row()
    # The common case, one statement: room left, and an id not queued yet.
    if tx.returning(_INSERT_WITHIN_BOUND, (*row, max_bytes - size)):
        return "queued"
    duplicate, total, telemetry = (
        tx.fetch(
            "SELECT (SELECT 1 FROM outbox WHERE event_id = ?), (SELECT SUM(bytes) FROM outbox_totals), "
            "(SELECT bytes FROM outbox_totals WHERE class = ?)",
            (row[0], int(EventClass.TELEMETRY)),
        )
    )[0]
    if duplicate:
        return "duplicate"
    excess = int(total) + size - max_bytes
    keep = event.cls is not EventClass.TELEMETRY or int(telemetry) >= excess
    if not keep:
        # It cannot fit even without any older telemetry: drop it, not the older ones. (If the bound was
        # lowered since they were queued, still bring the queue back within it.)
        excess = int(total) - max_bytes
    if excess > 0 and int(telemetry) > 0:
        _drop_oldest_telemetry(tx, excess)
    if keep:
        tx.execute(_INSERT, row)
        return "queued"
    _count_dropped(tx, 1)
    return "dropped"


def _drop_oldest_telemetry(tx: Tx, need: int) -> None:
    """Delete the oldest telemetry events until at least ``need`` bytes are freed (or none is left)."""
    freed = 0
    last = 0
    while freed < need:
        rows = tx.fetch(
            "SELECT seq, bytes FROM outbox WHERE class = ? AND seq > ? ORDER BY seq LIMIT ?",
            (int(EventClass.TELEMETRY), last, _DROP_SCAN),
        )
        for seq, size in rows:
            last = int(seq)
            freed += int(size)
            if freed >= need:
                break
        if len(rows) < _DROP_SCAN:
            break
    if last:
        dropped = tx.execute(
            "DELETE FROM outbox WHERE class = ? AND seq <= ?", (int(EventClass.TELEMETRY), last)
        )
        _count_dropped(tx, dropped)
        _LOGGER.debug("outbox over its bound: dropped the %s oldest telemetry events", dropped)


def _count_dropped(tx: Tx, n: int) -> None:
    tx.execute(
        "UPDATE outbox_totals SET dropped = dropped + ? WHERE class = ?", (n, int(EventClass.TELEMETRY))
    )


def anonymise_shopper_events(tx: Tx, shopper_id: str) -> int:
    """Strip an erased shopper's id from their queued events, except privacy ones (their consents, erasure).

    The events stay (anonymous measurement and conversions still count, nothing is lost); only who they
    were about goes. Rows are immutable, so each is deleted and written again with its seq and id. A scan
    of the queue (no shopper index, see migrations): nothing while the cloud is reachable and the queue is
    near empty; well under a second per 200k queued events on x86 after a long outage, once per erasure.
    """
    where = "WHERE shopper_id = ? AND class != ?"
    params = (shopper_id, int(EventClass.PRIVACY))
    rows = tx.fetch(
        f"SELECT seq, event_id, class, kind, at_ms, bytes, data FROM outbox {where}",  # noqa: S608
        params,
    )
    if not rows:
        return 0
    # Deleting a row ends its parking (a trigger); a rewritten row keeps it.
    parked = tx.fetch(
        "SELECT seq, reason, attempts, parked_wall, next_wall FROM outbox_parked "
        "WHERE seq IN (SELECT value FROM json_each(?))",
        (json.dumps([int(row[0]) for row in rows]),),
    )
    tx.execute(f"DELETE FROM outbox {where}", params)  # noqa: S608
    # The wire event names the shopper only in its envelope: a compact row's data stays as it is.
    named = len(wire_string(shopper_id)) - len(b"null")
    for seq, event_id, cls, kind, at_ms, size, data in rows:
        if data[0] == VERBATIM:
            document = json.loads(data[1:])
            document["shopper_id"] = None
            body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
            data, size = verbatim(body), len(body)  # noqa: PLW2901 - the row as it is written again
        else:
            size -= named  # noqa: PLW2901
        tx.execute(
            "INSERT INTO outbox (seq, event_id, class, kind, at_ms, shopper_id, bytes, data) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
            (seq, event_id, cls, kind, at_ms, size, data),
        )
    for row in parked:
        tx.execute(
            "INSERT INTO outbox_parked (seq, reason, attempts, parked_wall, next_wall) VALUES (?, ?, ?, ?, ?)",
            tuple(row),
        )
    return len(rows)


def enqueue_op(event: NewEvent, max_bytes: int | None) -> Op[EnqueueOutcome]:
    def run(tx: Tx) -> EnqueueOutcome:
        return insert_event(tx, event, max_bytes)

    return run


def ack_op(seqs: Sequence[int]) -> Op[int]:
    # One statement whatever the count (no bound-variable limit); json_each feeds the rowid lookups.
    encoded = json.dumps([int(seq) for seq in seqs])

    def run(tx: Tx) -> int:
        return tx.execute("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?))", (encoded,))

    return run


class Outbox:
    """``ledger.outbox``: enqueue, peek, ack and stats over the ledger's outbox table.

    Shares the ledger's single writer (every write commits before it returns) and its read lock.
    """

    def __init__(self, submit: Submit, read: Read, clock: Clock, *, max_bytes: int | None) -> None:
        self._submit = submit
        self._read = read
        self._clock = clock
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int | None:
        """The bound on the queued bodies' bytes (``Ledger(outbox_max_bytes=...)``); None: no outbox."""
        return self._max_bytes

    async def enqueue(
        self,
        kind: str,
        cls: EventClass,
        data: dict[str, Any],
        *,
        shopper_id: str | None = None,
        at_wall: float | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue one event durably and return its id (also when it was a duplicate or dropped by the bound).

        ``at_wall`` defaults to now; pass ``event_id`` when the event has a natural key, so a redelivered
        write is a no-op.
        """
        event = encode_event(
            kind,
            cls,
            data,
            at_wall=self._clock.wall() if at_wall is None else at_wall,
            shopper_id=shopper_id,
            event_id=event_id,
        )
        await self._submit(enqueue_op(event, self.max_bytes))
        return event.event_id

    async def peek(self, max_events: int, max_bytes: int) -> list[OutboxEntry]:
        """The oldest events not parked, in ``seq`` order, at most ``max_events`` and ``max_bytes`` of bodies.

        The first event is always included, even if it alone is larger than ``max_bytes``, so one large
        event can never block the queue.
        """
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be at least 1")
        # Parked events (docs/ledger.md "Refused events") wait for their own retry, one at a time.
        rows = await self._read(
            f"SELECT {ENTRY_COLUMNS}, bytes FROM outbox "  # noqa: S608 - constant column names
            "WHERE seq NOT IN (SELECT seq FROM outbox_parked) ORDER BY seq LIMIT ?",
            (max_events,),
        )
        # ``bytes`` is the wire event's length: the batch is cut before anything is decoded.
        entries: list[OutboxEntry] = []
        total = 0
        for row in rows:
            total += int(row[7])
            if entries and total > max_bytes:
                break
            entries.append(outbox_entry(row))
        return entries

    async def ack(self, seqs: Sequence[int]) -> int:
        """Delete delivered events durably; returns how many were still queued (acking twice is harmless)."""
        if not seqs:
            return 0
        return await self._submit(ack_op(seqs))

    async def stats(self) -> OutboxStats:
        """Queued events and bytes per class and in total, drops per class, head age, over_bound.

        Reads the trigger-maintained totals and the head row: O(1), cheap enough for every health tick.
        """
        rows = await self._read(
            "SELECT class, events, bytes, dropped, (SELECT at_ms FROM outbox ORDER BY seq LIMIT 1) "
            "FROM outbox_totals ORDER BY class"
        )
        by_class: dict[str, ClassStats] = {}
        head: int | None = None
        for cls, n, class_bytes, class_dropped, head_ms in rows:
            by_class[EventClass(cls).wire] = ClassStats(int(n), int(class_bytes), int(class_dropped))
            head = head_ms
        size = sum(figures.bytes for figures in by_class.values())
        return OutboxStats(
            events=sum(figures.events for figures in by_class.values()),
            bytes=size,
            max_bytes=self.max_bytes,
            over_bound=self.max_bytes is not None and size > self.max_bytes,
            dropped=sum(figures.dropped for figures in by_class.values()),
            oldest_age_s=max(0.0, self._clock.wall() - head / 1000.0) if head is not None else 0.0,
            by_class=by_class,
        )
