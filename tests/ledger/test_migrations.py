"""Schema versioning: migrate from empty, keep data on reopen, refuse a newer schema, atomic steps, 1 -> 2,
and the compact outbox (4 -> 5)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest

from edge.clock import ManualClock, iso_utc
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger, LedgerError, Refusal
from edge.ledger.deadletter import read_refused
from edge.ledger.migrations import SCHEMA_STEPS, SCHEMA_VERSION, migrate, schema_version
from edge.ledger.outbox import event_id_for
from edge.sync.wire import EventClass
from tests.ledger.outbox_support import recount, totals

AT = 1_800_000_000.0


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def test_fresh_database_is_migrated_to_the_current_version(db_path: Path, clock: ManualClock) -> None:
    assert not db_path.parent.exists()
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.table_counts() == {"decisions": 0, "exposures": 0, "consents": 0, "jti": 0}
        assert ledger.corrupted_moved_to is None
    assert _user_version(db_path) == SCHEMA_VERSION >= 1
    assert {"decisions", "exposures", "consents", "jti"} <= _tables(db_path)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_reopen_keeps_data_and_does_not_migrate_again(db_path, clock, make_decision) -> None:
    async with Ledger(db_path, clock) as ledger:
        await ledger.record_decision(make_decision("d1"), keep_shopper=True)
        assert await ledger.claim_jti("j1", clock.wall() + 60)
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.decision("d1") is not None
        assert await ledger.table_counts() == {"decisions": 1, "exposures": 0, "consents": 0, "jti": 1}
    assert _user_version(db_path) == SCHEMA_VERSION


async def test_newer_schema_is_refused_and_left_in_place(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock):
        pass
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer"):
        async with Ledger(db_path, clock):
            pass
    # Refusing is not corruption: the file stays where it is, untouched.
    assert _user_version(db_path) == SCHEMA_VERSION + 1
    assert [p.name for p in db_path.parent.iterdir() if ".corrupt-" in p.name] == []


async def test_a_failing_step_rolls_back_entirely(tmp_path: Path) -> None:
    steps = (
        ("CREATE TABLE a (x INTEGER)",),
        ("CREATE TABLE b (x INTEGER)", "INSERT INTO a VALUES (1)", "THIS IS NOT SQL"),
    )
    async with aiosqlite.connect(tmp_path / "m.db", isolation_level=None) as db:
        with pytest.raises(sqlite3.OperationalError):
            await migrate(db, steps)
        assert await schema_version(db) == 1
        names = {row[0] for row in await db.execute_fetchall("SELECT name FROM sqlite_master")}
        assert names == {"a"}
        assert list(await db.execute_fetchall("SELECT COUNT(*) FROM a")) == [(0,)]
        # Fixed step: migration resumes from version 1.
        assert await migrate(db, (steps[0], ("CREATE TABLE b (x INTEGER)",))) == 2
        assert await schema_version(db) == 2


async def test_version_1_file_with_data_is_upgraded_in_place(
    db_path: Path, clock: ManualClock, make_decision
) -> None:
    # A file exactly as a version-1 gateway left it, with data in every table.
    db_path.parent.mkdir(parents=True)
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        assert await migrate(db, SCHEMA_STEPS[:1]) == 1
        await db.execute_fetchall(
            "INSERT INTO decisions (decision_id, display_id, zone, at_wall, shopper_id, offer_id, template, "
            "model_version, propensity, explored, holdout, personalized, candidates) "
            "VALUES ('d1', 'screen-1', 'cafe', 1.0, 's1', 'o1', 'hero', 'm-1', 0.5, 0, 0, 1, '[]')"
        )
        await db.execute_fetchall("INSERT INTO exposures VALUES ('d1', 'screen-1', 1, 2.0, 3.0, 's1')")
        await db.execute_fetchall("INSERT INTO consents VALUES ('s1', 'measurement', 1, 1.0, 'app')")
        await db.execute_fetchall("INSERT INTO jti VALUES ('j1', 9e9)")
    assert _user_version(db_path) == 1

    async with Ledger(db_path, clock) as ledger:
        assert ledger.corrupted_moved_to is None
        assert await ledger.table_counts() == {"decisions": 1, "exposures": 1, "consents": 1, "jti": 1}
        record = await ledger.decision("d1")
        assert record is not None and record["shopper_id"] == "s1"
        assert not await ledger.claim_jti("j1", 9e9)
        assert (await ledger.outbox.stats()).events == 0
        assert await ledger.replica.cursor() is None
        # The new parts work on top of the old data.
        await ledger.record_decision(make_decision("d2"), keep_shopper=True)
        assert [e.kind for e in await ledger.outbox.peek(10, 1 << 20)] == ["decision"]
        await ledger.forget_shopper("s1")
        record = await ledger.decision("d1")
        assert record is not None and record["shopper_id"] is None
    assert _user_version(db_path) == SCHEMA_VERSION >= 2
    assert {
        "outbox",
        "outbox_totals",
        "sync_state",
        "profiles",
        "eid_keys",
        "token_keys",
        "offers",
        "inventory",
        "tombstones",
    } <= _tables(db_path)
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT class, events FROM outbox_totals ORDER BY class").fetchall() == [
            (0, 1),
            (1, 0),
            (2, 1),
        ]


def _v4_body(
    event_id: str, kind: str, cls: str, at: str, shopper: str | None, data: object, **dumps: bool
) -> bytes:
    document = {"id": event_id, "kind": kind, "class": cls, "at": at, "shopper_id": shopper, "data": data}
    return json.dumps(document, separators=(",", ":"), **dumps).encode()


async def test_a_version_4_outbox_is_made_compact_in_place(db_path: Path, clock: ManualClock) -> None:
    # Queued events exactly as a version-4 gateway left them: a decision, a parked conversion with an id that
    # is no UUID, a consent, and an event an erasure rewrote back then (non-ASCII escaped); one acked since.
    db_path.parent.mkdir(parents=True)
    at = iso_utc(AT)
    rows = [
        (
            3,
            event_id_for(AT, "decision:d1"),
            0,
            "decision",
            "s1",
            {"decision_id": "d1", "propensity": 0.5},
            {},
        ),
        (4, "pos-17", 1, "conversion", "s1", {"txn_id": "17", "total": 9.5}, {"ensure_ascii": False}),
        (
            5,
            event_id_for(AT, "consent:s1"),
            2,
            "consent",
            "s1",
            {"purpose": "measurement", "granted": False},
            {},
        ),
        (6, event_id_for(AT, "old"), 0, "presence", None, {"note": "café"}, {}),
        (7, event_id_for(AT, "acked"), 0, "decision", None, {}, {}),
    ]
    bodies = {}
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        assert await migrate(db, SCHEMA_STEPS[:4]) == 4
        for seq, event_id, cls, kind, shopper, data, dumps in rows:
            body = _v4_body(event_id, kind, EventClass(cls).wire, at, shopper, data, **dumps)
            bodies[event_id] = body
            await db.execute_fetchall(
                "INSERT INTO outbox (seq, event_id, class, kind, at_wall, shopper_id, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, event_id, cls, kind, AT, shopper, body),
            )
        await db.execute_fetchall("DELETE FROM outbox WHERE seq = 7")
        await db.execute_fetchall(
            "INSERT INTO outbox_parked (seq, reason, attempts, parked_wall, next_wall) VALUES (4, 'no', 1, ?, ?)",
            (AT, AT + 60),
        )
    before = totals(db_path)
    assert before[0] == (2, len(bodies[rows[0][1]]) + len(bodies[rows[3][1]]))

    async with Ledger(db_path, clock) as ledger:
        assert ledger.corrupted_moved_to is None
        # Pushed byte for byte as queued, in the same order, parked events still parked.
        assert [(e.seq, e.event_id, e.body) for e in await ledger.outbox.peek(100, 1 << 30)] == [
            (seq, event_id, bodies[event_id]) for seq, event_id, *_ in rows if seq in (3, 5, 6)
        ]
        (parked,) = await ledger.dead_letters.due(AT + 60, limit=10, latest_wall=AT + 3600)
        assert (parked.seq, parked.event_id, parked.body) == (4, "pos-17", bodies["pos-17"])
        assert totals(db_path) == recount(db_path) == before
        # A seq handed out before the upgrade, even one acked since, is never handed out again ...
        await ledger.outbox.enqueue("presence", EventClass.PRIVACY, {}, event_id="new")
        assert [e.seq for e in await ledger.outbox.peek(100, 1 << 30)][-1] == 8
        before = totals(db_path)
        # ... and ids are still deduplicated (a UUID is now 16 bytes: the same id finds the copied row).
        await ledger.outbox.enqueue("decision", EventClass.TELEMETRY, {}, event_id=rows[0][1])
        await ledger.outbox.enqueue("conversion", EventClass.CONVERSION, {}, event_id="pos-17")
        assert totals(db_path) == before
        # An erasure and a dead letter work on the copied rows too.
        await ledger.forget_shopper("s1", report=False)
        events = {e.event_id: json.loads(e.body) for e in await ledger.outbox.peek(100, 1 << 30)}
        assert events[rows[0][1]]["shopper_id"] is None
        assert events[rows[2][1]]["shopper_id"] == "s1"  # privacy events keep it
        assert totals(db_path) == recount(db_path)
        (decision,) = await ledger.outbox.peek(1, 1 << 30)
        await ledger.dead_letters.settle(
            [], give_up=[Refusal(decision, "bad")], now_wall=clock.wall(), retry_in=lambda _: 60.0
        )
        (dead,) = list(read_refused(db_path))
        assert dead.event == {**json.loads(bodies[rows[0][1]]), "shopper_id": None}
        assert totals(db_path) == recount(db_path)
    with sqlite3.connect(db_path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
        assert columns == ["seq", "event_id", "class", "kind", "at_ms", "shopper_id", "bytes", "data"]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'outbox_v4%'").fetchall()


async def test_a_version_8_tombstone_is_keyed_in_place_and_still_holds(
    db_path: Path, clock: ManualClock
) -> None:
    # An erasure as a version-8 gateway recorded it: the id in clear.
    db_path.parent.mkdir(parents=True)
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        assert await migrate(db, SCHEMA_STEPS[:8]) == 8
        await db.execute_fetchall(
            "INSERT INTO tombstones (shopper_id, erased_wall) VALUES ('p-gone', ?)", (AT,)
        )
    async with Ledger(db_path, clock) as ledger:
        assert ledger.replica.tombstone("p-gone") == AT and ledger.replica.tombstone("p-other") is None
        # Still refuses what is older than the erasure, asked by id through the keyed hash.
        await ledger.set_consent(ConsentRow("p-gone", Purpose.MEASUREMENT, True, AT - 1, "app"))
        assert await ledger.load_consents() == []
    with closing(sqlite3.connect(db_path)) as conn:
        assert b"p-gone" not in _bytes_of(db_path)
        (stored,) = conn.execute("SELECT shopper_key FROM tombstones").fetchall()
        assert len(stored[0]) == 64 and "p-gone" not in stored[0]


def _bytes_of(path: Path) -> bytes:
    return path.read_bytes()
