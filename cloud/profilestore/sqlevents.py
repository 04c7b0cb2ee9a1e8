"""Pushed events in SQL: stored once by id in receive order (with what the cross-channel join needs of them,
``profilestore.sqlcross``, in the same transaction), and read back page by page."""

from __future__ import annotations

import json
from collections.abc import Sequence

from profilestore import sqlcross
from profilestore.jsonbody import dumps
from profilestore.sqldb import ENTRY_OVERHEAD, LAST, Connection, Database, Lane, next_value, one
from profilestore.storage import EventPage, EventRecord, PushOutcome, StoredEvent


async def push_events(db: Database, store_id: str, events: Sequence[EventRecord], now_us: int) -> PushOutcome:
    """Store each event once by id; see ``Storage.push_events``."""
    first: dict[str, int] = {}
    duplicates = 0
    for index, event in enumerate(events):
        if event.id in first:
            duplicates += 1  # the same id twice in one batch: stored once
        else:
            first[event.id] = index
    foreign: list[int] = []
    async with db.writing(Lane.EVENTS) as conn:
        known = {
            str(event_id).lower(): str(owner)
            for event_id, owner in await conn.fetch_any(
                "SELECT id, store_id FROM events WHERE id {ANY}", list(first), "uuid"
            )
        }
        fresh: list[EventRecord] = []
        for event_id, index in first.items():
            owner = known.get(event_id)
            if owner is None:
                fresh.append(events[index])
            elif owner == store_id:
                duplicates += 1
            else:
                foreign.append(index)
        if fresh:
            await _insert(conn, store_id, fresh, now_us)
            await sqlcross.index_events(conn, store_id, fresh, now_us)
    return PushOutcome(
        accepted=len(fresh),
        duplicates=duplicates,
        foreign=sorted(foreign),
        fresh=sorted(first[event.id] for event in fresh),
    )


async def _insert(conn: Connection, store_id: str, fresh: list[EventRecord], now_us: int) -> None:
    shoppers = sorted({event.shopper_id for event in fresh if event.shopper_id is not None})
    erased = {
        str(shopper): int(erased_us)
        for shopper, erased_us in (
            await conn.fetch_any(
                "SELECT shopper_id, erased_us FROM erasures WHERE shopper_id {ANY}", shoppers, "text"
            )
            if shoppers
            else []
        )
    }
    last = await next_value(conn, "events", len(fresh))
    rows = []
    for offset, event in enumerate(fresh):
        shopper = event.shopper_id
        # Sent from a backlog after the shopper was erased: kept, but no longer theirs.
        if shopper is not None and shopper in erased and event.at_us <= erased[shopper]:
            shopper = None
        rows.append(
            (
                event.id,
                last - len(fresh) + 1 + offset,
                store_id,
                event.kind,
                event.event_class,
                event.at_us,
                shopper,
                dumps(event.data),
                now_us,
            )
        )
    await conn.executemany(
        "INSERT INTO events (id, recv_seq, store_id, kind, event_class, at_us, shopper_id, data, received_us)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        rows,
    )


async def list_events(
    db: Database, store_id: str | None, after: int, limit: int, budget_bytes: int
) -> EventPage:
    """A page of stored events in receive order; see ``Storage.events``."""
    select = (
        "SELECT recv_seq, store_id, id, kind, event_class, at_us, shopper_id, data, received_us FROM events"
    )
    async with db.reading() as conn:
        last = await one(conn, LAST, "events")
        if store_id is None:
            rows = await conn.fetch(
                f"{select} WHERE recv_seq > $1 ORDER BY recv_seq LIMIT $2", after, limit + 1
            )
        else:
            rows = await conn.fetch(
                f"{select} WHERE recv_seq > $1 AND store_id = $3 ORDER BY recv_seq LIMIT $2",
                after,
                limit + 1,
                store_id,
            )
    page: list[StoredEvent] = []
    spent = 0
    for recv_seq, owner, event_id, kind, event_class, at_us, shopper, data, received_us in rows[:limit]:
        spent += len(data) + ENTRY_OVERHEAD
        if page and spent > budget_bytes:
            break
        record = EventRecord(
            str(event_id).lower(), str(kind), str(event_class), int(at_us), shopper, json.loads(data)
        )
        page.append(StoredEvent(int(recv_seq), str(owner), int(received_us), record))
    return EventPage(page, more=len(rows) > len(page), last_recv_seq=int(last[0]) if last else 0)
