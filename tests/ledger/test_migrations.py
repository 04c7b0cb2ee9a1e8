"""Schema versioning: migrate from empty, keep data on reopen, refuse a newer schema, atomic steps, 1 -> 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger, LedgerError
from edge.ledger.migrations import SCHEMA_STEPS, SCHEMA_VERSION, migrate, schema_version


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
