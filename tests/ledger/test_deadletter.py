"""Refused events: a push answer settled in one transaction, parked events kept and retried, dead letters
kept with their reason, bounded and counted, erasure reaching both, and the read-only export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger, OutboxEntry, Refusal
from edge.ledger import deadletter as deadletter_module
from edge.ledger.deadletter import DeadLetterStats, ParkedStats, read_refused
from edge.sync.wire import EventClass
from tests.ledger.outbox_support import recount, totals


def minutes(attempt: int) -> float:
    return 60.0 * attempt


async def _queue(ledger: Ledger, *classes: EventClass, shopper_id: str | None = None) -> list[OutboxEntry]:
    for index, cls in enumerate(classes):
        await ledger.outbox.enqueue("thing", cls, {"n": index}, shopper_id=shopper_id)
    return await ledger.outbox.peek(1000, 1 << 30)


async def test_one_answer_settles_stored_given_up_and_parked_events_at_once(
    ledger: Ledger, clock: ManualClock, db_path: Path
) -> None:
    stored, telemetry, conversion, privacy = await _queue(
        ledger, EventClass.TELEMETRY, EventClass.TELEMETRY, EventClass.CONVERSION, EventClass.PRIVACY
    )
    parked = await ledger.dead_letters.settle(
        [stored.seq],
        give_up=[Refusal(telemetry, "kind: bad")],
        park=[Refusal(conversion, "data: bad"), Refusal(privacy, "at: bad")],
        now_wall=clock.wall(),
        retry_in=minutes,
    )
    assert parked == 2
    # Parked events stay queued and counted, but the normal peek passes them by.
    assert [e.seq for e in await ledger.outbox.peek(10, 1 << 20)] == []
    outbox = await ledger.outbox.stats()
    assert outbox.events == 2 and outbox.by_class["privacy"].events == 1
    assert recount(db_path) == totals(db_path)
    stats = await ledger.dead_letters.stats(clock.wall())
    assert stats.parked == ParkedStats(
        events=2, by_class={"telemetry": 0, "conversion": 1, "privacy": 1}, oldest_age_s=0.0
    )
    assert stats.dead_letter == DeadLetterStats(events=1, given_up=1, evicted=0, last_age_s=0.0)
    (dead,) = list(read_refused(db_path))
    assert (dead.state, dead.event_id, dead.cls, dead.reason) == (
        "dead",
        telemetry.event_id,
        "telemetry",
        "kind: bad",
    )
    assert dead.event == json.loads(telemetry.body)


async def test_parked_events_come_due_with_growing_delays_and_leave_when_delivered(
    ledger: Ledger, clock: ManualClock, db_path: Path
) -> None:
    (conversion,) = await _queue(ledger, EventClass.CONVERSION)
    latest = clock.wall() + 3600

    async def park_again() -> None:
        await ledger.dead_letters.settle(
            [], park=[Refusal(conversion, "no")], now_wall=clock.wall(), retry_in=minutes
        )

    await park_again()
    assert await ledger.dead_letters.due(clock.wall(), limit=10, latest_wall=latest) == []
    clock.advance(60)
    assert [e.seq for e in await ledger.dead_letters.due(clock.wall(), limit=10, latest_wall=latest)] == [
        conversion.seq
    ]
    await park_again()  # attempt 2: two minutes
    clock.advance(60)
    assert await ledger.dead_letters.due(clock.wall(), limit=10, latest_wall=clock.wall() + 3600) == []
    clock.advance(60)
    (record,) = list(read_refused(db_path, parked=True))
    assert (record.state, record.attempts, record.reason) == ("parked", 2, "no")
    assert record.next_wall == clock.wall()
    # The wall clock set back a day: an attempt further ahead than any delay we give is due at once.
    assert await ledger.dead_letters.due(clock.wall() - 86_400, limit=10, latest_wall=clock.wall() - 82_800)
    # Delivered at last: the ack ends the parking too.
    await ledger.outbox.ack([conversion.seq])
    assert (await ledger.dead_letters.stats(clock.wall())).parked.events == 0
    assert list(read_refused(db_path, parked=True)) == []


async def test_the_dead_letters_are_bounded_oldest_first_and_counted(
    ledger: Ledger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deadletter_module, "DEAD_LETTER_MAX_EVENTS", 3)
    entries = await _queue(ledger, *[EventClass.TELEMETRY] * 5)
    for entry in entries:
        await ledger.dead_letters.settle(
            [], give_up=[Refusal(entry, "no")], now_wall=clock.wall(), retry_in=minutes
        )
    dead = (await ledger.dead_letters.stats(clock.wall())).dead_letter
    assert (dead.events, dead.given_up, dead.evicted) == (3, 5, 2)
    assert [r.event_id for r in read_refused(ledger._path)] == [e.event_id for e in entries[2:]]


async def test_an_erasure_reaches_dead_letters_and_keeps_a_parked_conversion_parked(
    ledger: Ledger, clock: ManualClock, db_path: Path
) -> None:
    telemetry, conversion = await _queue(ledger, EventClass.TELEMETRY, EventClass.CONVERSION, shopper_id="s1")
    await ledger.dead_letters.settle(
        [],
        give_up=[Refusal(telemetry, "no")],
        park=[Refusal(conversion, "no")],
        now_wall=clock.wall(),
        retry_in=minutes,
    )
    await ledger.forget_shopper("s1")
    (dead,) = list(read_refused(db_path))
    assert dead.event["shopper_id"] is None and dead.event["data"] == {"n": 0}
    (parked,) = list(read_refused(db_path, parked=True))
    assert parked.event_id == conversion.event_id and parked.event["shopper_id"] is None
    assert (await ledger.dead_letters.stats(clock.wall())).parked.events == 1


async def test_parking_an_event_the_bound_already_dropped_parks_nothing(
    ledger: Ledger, clock: ManualClock
) -> None:
    (telemetry,) = await _queue(ledger, EventClass.TELEMETRY)
    await ledger.outbox.ack([telemetry.seq])
    parked = await ledger.dead_letters.settle(
        [], park=[Refusal(telemetry, "no")], now_wall=clock.wall(), retry_in=minutes
    )
    assert parked == 0
    assert (await ledger.dead_letters.stats(clock.wall())).parked.events == 0


async def test_the_export_reads_beside_an_open_ledger(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        (entry,) = await _queue(ledger, EventClass.TELEMETRY)
        await ledger.dead_letters.settle(
            [], give_up=[Refusal(entry, "no")], now_wall=clock.wall(), retry_in=minutes
        )
        assert [r.event_id for r in read_refused(db_path)] == [entry.event_id]
        # The writer still writes while a reader looks.
        await ledger.outbox.enqueue("after", EventClass.TELEMETRY, {})
    with pytest.raises(FileNotFoundError):
        list(read_refused(db_path.with_name("missing.sqlite")))
