"""The outbox: wire events, the byte bound with priority classes, peek/ack, stats, and events from ledger ops."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock, iso_utc
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger
from edge.ledger.eventcodec import KIND_CODES
from edge.ledger.outbox import ClassStats, encode_event, event_id_for
from edge.sync.wire import EventClass
from tests.ledger.outbox_support import dropped, queued, recount, totals

TELEMETRY, CONVERSION, PRIVACY = EventClass.TELEMETRY, EventClass.CONVERSION, EventClass.PRIVACY
AT = 1_800_000_000.0


def _size(event_id: str, cls: EventClass, data: dict[str, Any], kind: str = "k") -> int:
    return len(encode_event(kind, cls, data, at_wall=AT, event_id=event_id).body)


async def _enqueue(
    ledger: Ledger, event_id: str, cls: EventClass, data: dict[str, Any] | None = None
) -> None:
    await ledger.outbox.enqueue("k", cls, data or {}, at_wall=AT, event_id=event_id)


async def _ids(ledger: Ledger) -> list[str]:
    return [entry.event_id for entry in await ledger.outbox.peek(10_000, 1 << 30)]


async def _events(ledger: Ledger) -> list[dict[str, Any]]:
    return [json.loads(entry.body) for entry in await ledger.outbox.peek(10_000, 1 << 30)]


# --- the event itself ---------------------------------------------------------------------------------------


async def test_enqueue_stores_the_compact_wire_event(ledger: Ledger, clock: ManualClock) -> None:
    event_id = await ledger.outbox.enqueue(
        "conversion", CONVERSION, {"order": "o-1", "amount": 12.5, "note": "café"}, shopper_id="s1"
    )
    # A UUID in the v7 layout: time first, so the outbox's unique index only ever grows at one end.
    assert uuid.UUID(event_id).version == 7
    assert uuid.UUID(event_id).int >> 80 == int(clock.wall() * 1000)
    (entry,) = await ledger.outbox.peek(10, 1 << 20)
    assert (entry.seq, entry.event_id, entry.cls, entry.kind, entry.shopper_id) == (
        1,
        event_id,
        CONVERSION,
        "conversion",
        "s1",
    )
    assert json.loads(entry.body) == {
        "id": event_id,
        "kind": "conversion",
        "class": "conversion",
        "at": iso_utc(clock.wall()),
        "shopper_id": "s1",
        "data": {"order": "o-1", "amount": 12.5, "note": "café"},
    }
    # Compact, UTF-8, ready to splice into a push batch as it is.
    assert b": " not in entry.body
    assert b", " not in entry.body
    assert "café".encode() in entry.body


def test_event_ids_are_time_ordered_and_deterministic_with_a_key() -> None:
    assert event_id_for(AT, "decision:d1") == event_id_for(AT, "decision:d1")
    assert event_id_for(AT, "decision:d1") != event_id_for(AT, "decision:d2")
    assert event_id_for(AT) != event_id_for(AT)
    ids = [event_id_for(AT + n, "same") for n in range(5)]
    assert ids == sorted(ids)
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}


async def test_an_event_id_is_queued_once(ledger: Ledger) -> None:
    for _ in range(3):
        await ledger.outbox.enqueue("conversion", CONVERSION, {"n": 1}, event_id="fixed-id")
    assert await _ids(ledger) == ["fixed-id"]


async def test_a_value_json_cannot_hold_fails_the_caller_and_queues_nothing(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.outbox.enqueue("k", TELEMETRY, {"x": float("nan")})
    with pytest.raises(TypeError):
        await ledger.outbox.enqueue("k", TELEMETRY, {"x": object()})
    assert await _ids(ledger) == []


# --- peek and ack -------------------------------------------------------------------------------------------


async def test_peek_is_in_seq_order_within_both_limits_and_never_empty(ledger: Ledger) -> None:
    for n in range(10):
        await _enqueue(ledger, f"e{n}", TELEMETRY if n % 2 else PRIVACY, {"n": n})
    entries = await ledger.outbox.peek(3, 1 << 20)
    assert [e.event_id for e in entries] == ["e0", "e1", "e2"]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    two = len(entries[0].body) + len(entries[1].body)
    assert [e.event_id for e in await ledger.outbox.peek(10, two)] == ["e0", "e1"]
    assert [e.event_id for e in await ledger.outbox.peek(10, two - 1)] == ["e0"]
    # One event larger than max_bytes still goes out alone, so it can never block the queue.
    assert [e.event_id for e in await ledger.outbox.peek(10, 1)] == ["e0"]
    with pytest.raises(ValueError):
        await ledger.outbox.peek(0, 100)


async def test_ack_deletes_durably_and_is_idempotent(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        for n in range(5):
            await _enqueue(ledger, f"e{n}", PRIVACY)
        entries = await ledger.outbox.peek(3, 1 << 20)
        assert await ledger.outbox.ack([e.seq for e in entries]) == 3
        assert await ledger.outbox.ack([e.seq for e in entries]) == 0
        assert await ledger.outbox.ack([]) == 0
        assert await _ids(ledger) == ["e3", "e4"]
    async with Ledger(db_path, clock) as ledger:
        assert await _ids(ledger) == ["e3", "e4"]
        stats = await ledger.outbox.stats()
        assert stats.events == 2
    assert totals(db_path) == recount(db_path)


async def test_a_seq_is_never_reused(ledger: Ledger) -> None:
    # A late ack of an old seq must never delete a newer event that took the same number.
    await _enqueue(ledger, "a", PRIVACY)
    (first,) = await ledger.outbox.peek(1, 1 << 20)
    await ledger.outbox.ack([first.seq])
    await _enqueue(ledger, "b", PRIVACY)
    (second,) = await ledger.outbox.peek(1, 1 << 20)
    assert second.seq > first.seq
    assert await ledger.outbox.ack([first.seq]) == 0
    assert await _ids(ledger) == ["b"]


async def test_rows_cannot_be_updated_behind_the_totals(ledger: Ledger, db_path: Path) -> None:
    await _enqueue(ledger, "a", PRIVACY)
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE outbox SET data = x'00'")


# --- the byte bound -----------------------------------------------------------------------------------------


async def test_the_oldest_telemetry_is_dropped_first(db_path: Path, clock: ManualClock) -> None:
    size = _size("t0", TELEMETRY, {})
    async with Ledger(db_path, clock, outbox_max_bytes=3 * size) as ledger:
        for n in range(3):
            await _enqueue(ledger, f"t{n}", TELEMETRY)
        assert await _ids(ledger) == ["t0", "t1", "t2"]
        await _enqueue(ledger, "t3", TELEMETRY)
        assert await _ids(ledger) == ["t1", "t2", "t3"]
        stats = await ledger.outbox.stats()
    assert stats.bytes == 3 * size
    assert stats.over_bound is False
    assert stats.by_class["telemetry"] == ClassStats(events=3, bytes=3 * size, dropped=1)
    assert stats.dropped == 1


async def test_privacy_and_conversion_are_never_dropped(db_path: Path, clock: ManualClock) -> None:
    size = _size("t0", TELEMETRY, {})
    async with Ledger(db_path, clock, outbox_max_bytes=2 * size) as ledger:
        await _enqueue(ledger, "t0", TELEMETRY)
        await _enqueue(ledger, "t1", TELEMETRY)
        await _enqueue(ledger, "p0", PRIVACY)  # room is made from the oldest telemetry
        assert await _ids(ledger) == ["t1", "p0"]
        for n in range(1, 4):
            await _enqueue(ledger, f"p{n}", PRIVACY)
            await _enqueue(ledger, f"c{n}", CONVERSION)
        # All telemetry is gone; the never-dropped events stay, past the bound, and say so.
        assert await _ids(ledger) == ["p0", "p1", "c1", "p2", "c2", "p3", "c3"]
        stats = await ledger.outbox.stats()
        assert stats.over_bound is True
        assert stats.bytes > 2 * size
        # A new telemetry event cannot fit: it is dropped itself, and counted.
        await _enqueue(ledger, "t2", TELEMETRY)
        assert "t2" not in await _ids(ledger)
        stats = await ledger.outbox.stats()
    assert {cls: counts.dropped for cls, counts in stats.by_class.items()} == {
        "telemetry": 3,
        "conversion": 0,
        "privacy": 0,
    }
    assert totals(db_path) == recount(db_path)


async def test_telemetry_that_cannot_fit_drops_itself_not_the_older_ones(db_path, clock: ManualClock) -> None:
    size = _size("t0", TELEMETRY, {})
    async with Ledger(db_path, clock, outbox_max_bytes=3 * size) as ledger:
        await _enqueue(ledger, "t0", TELEMETRY)
        await _enqueue(ledger, "t1", TELEMETRY)
        await _enqueue(ledger, "huge", TELEMETRY, {"pad": "x" * (3 * size)})
        assert await _ids(ledger) == ["t0", "t1"]
        assert (await ledger.outbox.stats()).by_class["telemetry"].dropped == 1


async def test_drop_counters_persist_and_a_lowered_bound_applies(db_path: Path, clock: ManualClock) -> None:
    size = _size("t0", TELEMETRY, {})
    async with Ledger(db_path, clock, outbox_max_bytes=10 * size) as ledger:
        for n in range(6):
            await _enqueue(ledger, f"t{n}", TELEMETRY)
    async with Ledger(db_path, clock, outbox_max_bytes=3 * size) as ledger:
        await _enqueue(ledger, "t6", TELEMETRY)
        assert await _ids(ledger) == ["t4", "t5", "t6"]
    async with Ledger(db_path, clock) as ledger:
        assert (await ledger.outbox.stats()).by_class["telemetry"].dropped == 4
    assert dropped(db_path) == {0: 4, 1: 0, 2: 0}


async def test_stats_report_the_age_of_the_head_from_the_clock(ledger: Ledger, clock: ManualClock) -> None:
    empty = await ledger.outbox.stats()
    assert (empty.events, empty.bytes, empty.oldest_age_s, empty.over_bound) == (0, 0, 0.0, False)
    await ledger.outbox.enqueue("k", PRIVACY, {})
    clock.advance(30.0)
    await ledger.outbox.enqueue("k", TELEMETRY, {})
    clock.advance(5.0)
    stats = await ledger.outbox.stats()
    assert stats.oldest_age_s == pytest.approx(35.0)
    assert stats.events == 2
    assert stats.max_bytes == ledger.outbox.max_bytes


# --- events written by ledger ops, in the same transaction -----------------------------------------------------


async def test_a_decision_queues_one_telemetry_event(
    ledger: Ledger, make_decision, clock: ManualClock
) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)  # redelivered
    await ledger.record_decision(make_decision("d2"), keep_shopper=False)
    first, second = await _events(ledger)
    assert first == {
        "id": event_id_for(clock.wall(), "decision:d1"),
        "kind": "decision",
        "class": "telemetry",
        "at": iso_utc(clock.wall()),
        "shopper_id": "shopper-1",
        "data": {
            "decision_id": "d1",
            "display_id": "screen-1",
            "zone": "entrance",
            "offer_id": "offer-a",
            "template": "hero",
            "model_version": "m-1",
            "propensity": 0.25,
            "explored": True,
            "holdout": False,
            "personalized": True,
        },
    }
    assert second["shopper_id"] is None
    assert second["id"] == event_id_for(clock.wall(), "decision:d2")


async def test_an_exposure_queues_one_event_with_the_decisions_shopper(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d2"), keep_shopper=False)
    args = {"display_id": "screen-1", "version": 4, "shown_at_wall": AT, "acked_at_wall": AT + 1.5}
    assert await ledger.record_exposure(decision_id="d1", **args)
    assert not await ledger.record_exposure(decision_id="d1", **args)  # redelivered ack
    assert await ledger.record_exposure(decision_id="d2", **args)
    assert not await ledger.record_exposure(decision_id="ghost", **args)
    exposures = [event for event in await _events(ledger) if event["kind"] == "exposure"]
    assert exposures == [
        {
            "id": event_id_for(AT, "exposure:d1:screen-1"),
            "kind": "exposure",
            "class": "telemetry",
            "at": iso_utc(AT),
            "shopper_id": "shopper-1",
            "data": {
                "decision_id": "d1",
                "display_id": "screen-1",
                "version": 4,
                "shown_at": iso_utc(AT),
                "acked_at": iso_utc(AT + 1.5),
            },
        },
        {
            "id": event_id_for(AT, "exposure:d2:screen-1"),
            "kind": "exposure",
            "class": "telemetry",
            "at": iso_utc(AT),
            "shopper_id": None,
            "data": {
                "decision_id": "d2",
                "display_id": "screen-1",
                "version": 4,
                "shown_at": iso_utc(AT),
                "acked_at": iso_utc(AT + 1.5),
            },
        },
    ]


async def test_an_acked_event_is_not_made_again_by_a_redelivered_write(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.outbox.ack([entry.seq for entry in await ledger.outbox.peek(10, 1 << 20)])
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    assert await _ids(ledger) == []


async def test_a_stored_local_consent_queues_a_privacy_event(ledger: Ledger) -> None:
    await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT, "app"))
    await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT - 10, "kiosk"))  # stale
    await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT, "app"))  # same again
    await ledger.set_consent(ConsentRow("s2", Purpose.PERSONALIZATION, True, AT, "cloud"))  # not echoed
    assert await _events(ledger) == [
        {
            "id": event_id_for(AT, f"consent:s1:measurement:{AT!r}:1:app"),
            "kind": "consent",
            "class": "privacy",
            "at": iso_utc(AT),
            "shopper_id": "s1",
            "data": {"purpose": "measurement", "granted": True, "at": iso_utc(AT), "source": "app"},
        }
    ]
    # The cloud's own consent was stored, just not sent back.
    assert [c.shopper_id for c in await ledger.load_consents()] == ["s1", "s2"]


async def test_a_local_forget_queues_an_erasure_and_anonymises_the_shoppers_other_events(
    ledger: Ledger, make_decision, clock: ManualClock, db_path: Path
) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d2", shopper_id="other"), keep_shopper=True)
    await ledger.set_consent(ConsentRow("shopper-1", Purpose.MEASUREMENT, True, AT - 5, "app"))
    await ledger.outbox.enqueue("purchase", CONVERSION, {"order": "o1"}, shopper_id="shopper-1")

    await ledger.forget_shopper("shopper-1")
    await ledger.forget_shopper("other", report=False)

    kinds = [(e["kind"], e["shopper_id"]) for e in await _events(ledger)]
    # Their consent change and their erasure still reach the cloud with their id; the rest stays, anonymous.
    assert kinds == [
        ("decision", None),
        ("decision", None),
        ("consent", "shopper-1"),
        ("purchase", None),
        ("erasure", "shopper-1"),
    ]
    erasure = (await _events(ledger))[-1]
    assert (erasure["class"], erasure["data"], erasure["at"]) == ("privacy", {}, iso_utc(clock.wall()))
    # The rewritten rows name nobody, and the totals count their shorter wire events exactly.
    assert totals(db_path) == recount(db_path)


# --- transactional: the row and its event commit together or not at all ---------------------------------------


async def test_a_failing_op_leaves_neither_row_nor_event(ledger: Ledger, make_decision, db_path) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    with pytest.raises(sqlite3.IntegrityError):
        await ledger.record_decision(make_decision("bad", propensity=2.0), keep_shopper=True)
    # Make the event's own insert fail after the exposure row was written in the same transaction.
    with sqlite3.connect(db_path) as db:
        db.execute(
            "CREATE TRIGGER refuse_exposure_events BEFORE INSERT ON outbox "
            f"WHEN NEW.kind = {KIND_CODES['exposure']} "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    args = {"display_id": "screen-1", "version": 1, "shown_at_wall": AT, "acked_at_wall": AT}
    results = await asyncio.gather(
        ledger.record_exposure(decision_id="d1", **args),
        ledger.claim_jti("j1", AT + 60),
        return_exceptions=True,
    )
    assert isinstance(results[0], sqlite3.IntegrityError)
    assert results[1] is True  # the other write of the batch is unaffected
    assert await ledger.exposures() == []
    assert [e["kind"] for e in await _events(ledger)] == ["decision"]
    assert await ledger.decision("bad") is None
    assert totals(db_path) == recount(db_path)


# --- property: totals exact, the drop policy as a model, never a privacy or conversion drop -------------------

_actions = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.sampled_from(list(EventClass)), st.integers(0, 120)),
        st.tuples(st.just("ack"), st.integers(1, 6), st.booleans()),
    ),
    max_size=40,
)


def _model_enqueue(
    queue: list[tuple[str, EventClass, int]], event: tuple[str, EventClass, int], bound: int
) -> int:
    """The documented policy in plain Python; returns how many telemetry events it dropped."""
    _, cls, size = event
    total = sum(s for _, _, s in queue)
    if total + size <= bound:
        queue.append(event)
        return 0
    telemetry = sum(s for _, c, s in queue if c is TELEMETRY)
    excess = total + size - bound
    keep = cls is not TELEMETRY or telemetry >= excess
    drops = 0 if keep else 1
    if not keep:
        excess = total - bound
    freed = 0
    while freed < excess and any(c is TELEMETRY for _, c, _ in queue):
        index = next(i for i, (_, c, _) in enumerate(queue) if c is TELEMETRY)
        freed += queue.pop(index)[2]
        drops += 1
    if keep:
        queue.append(event)
    return drops


async def _run_actions(path: Path, actions: list[tuple[Any, ...]], bound: int) -> None:
    model: list[tuple[str, EventClass, int]] = []
    model_drops = 0
    never_dropped: set[str] = set()
    async with Ledger(path, ManualClock(), outbox_max_bytes=bound) as ledger:
        for n, action in enumerate(actions):
            if action[0] == "enqueue":
                _, cls, pad = action
                event_id, data = f"e{n:04d}", {"pad": "x" * pad}
                await ledger.outbox.enqueue("k", cls, data, at_wall=AT, event_id=event_id)
                model_drops += _model_enqueue(model, (event_id, cls, _size(event_id, cls, data)), bound)
                if cls is not TELEMETRY:
                    never_dropped.add(event_id)
            else:
                _, count, skip_first = action
                entries = await ledger.outbox.peek(count, 1 << 20)
                acked = entries[1:] if skip_first else entries
                await ledger.outbox.ack([e.seq for e in acked])
                gone = {e.event_id for e in acked}
                model[:] = [item for item in model if item[0] not in gone]
                never_dropped -= gone
            assert totals(path) == recount(path)
            present = [event_id for _, event_id, _ in queued(path)]
            assert present == [event_id for event_id, _, _ in model]
            assert never_dropped <= set(present)
            stats = await ledger.outbox.stats()
            assert stats.over_bound == (stats.bytes > bound)
            # Within the bound, unless only never-dropped events are left.
            assert stats.bytes <= bound or stats.by_class["telemetry"].events == 0
    assert dropped(path) == {0: model_drops, 1: 0, 2: 0}


@settings(max_examples=40, deadline=None)
@given(actions=_actions, bound=st.sampled_from([300, 700, 1500]))
def test_random_enqueues_and_acks_follow_the_policy(actions: list[tuple[Any, ...]], bound: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run_actions(Path(folder) / "ledger.db", actions, bound))


async def test_without_a_cloud_nothing_is_queued(db_path: Path, clock: ManualClock, make_decision) -> None:
    async with Ledger(db_path, clock, outbox_max_bytes=None) as ledger:
        await ledger.record_decision(make_decision("d1"), keep_shopper=True)
        await ledger.set_consent(ConsentRow("shopper-1", Purpose.MEASUREMENT, True, AT - 5, "app"))
        await ledger.outbox.enqueue("purchase", EventClass.CONVERSION, {"order": "o1"})
        stats = await ledger.outbox.stats()
        assert (stats.events, stats.dropped, stats.over_bound) == (0, 0, False)
        assert await ledger.decision("d1") is not None  # the rows themselves are written as always
