"""A corrupt database file is moved aside (with its WAL) and a fresh one started, loudly."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger, LedgerError
from edge.ledger.recovery import is_corruption, move_aside

GARBAGE = b"this is not an SQLite database\x00\xff" * 256


@pytest.fixture
def clock_start() -> float:
    return 1_800_000_000.0  # 2027-01-15T08:00:00Z, the instant in the moved files' names below


async def _assert_fresh_and_working(ledger: Ledger, clock: ManualClock) -> None:
    assert await ledger.table_counts() == {"decisions": 0, "exposures": 0, "consents": 0, "jti": 0}
    assert await ledger.claim_jti("j", clock.wall() + 60)
    assert ledger.stats().corrupt_recovered == 1


def _write_garbage(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.write_bytes(GARBAGE)


def _write_stale_wal(db_path: Path) -> None:
    db_path.with_name(db_path.name + "-wal").write_bytes(b"stale wal")


def _truncate_to_half(db_path: Path) -> int:
    size = db_path.stat().st_size
    with db_path.open("r+b") as handle:
        handle.truncate(size // 2)
    return size


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_garbage_file_is_moved_aside(db_path: Path, clock: ManualClock, caplog) -> None:
    _write_garbage(db_path)
    _write_stale_wal(db_path)
    with caplog.at_level(logging.ERROR, logger="edge.ledger"):
        async with Ledger(db_path, clock) as ledger:
            moved = ledger.corrupted_moved_to
            assert moved == db_path.with_name("ledger.db.corrupt-20270115T080000Z")
            assert moved.read_bytes() == GARBAGE
            # SQLite itself deletes a WAL it cannot use when the bad connection closes; what matters is
            # that the stale one is never replayed into the fresh database.
            await _assert_fresh_and_working(ledger, clock)
    assert any(r.levelno == logging.ERROR and "corrupt" in r.getMessage() for r in caplog.records)
    # The fresh database is sound: the next start does not move anything.
    async with Ledger(db_path, clock) as ledger:
        assert ledger.corrupted_moved_to is None
        assert (await ledger.table_counts())["jti"] == 1


async def test_truncated_database_is_moved_aside(db_path: Path, clock: ManualClock, make_decision) -> None:
    async with Ledger(db_path, clock) as ledger:
        await asyncio.gather(
            *(
                ledger.record_decision(make_decision(f"d{i}", template="t" * 200), keep_shopper=True)
                for i in range(500)
            )
        )
    size = _truncate_to_half(db_path)
    assert size > 64 * 1024

    async with Ledger(db_path, clock) as ledger:
        moved = ledger.corrupted_moved_to
        assert moved is not None
        assert moved.stat().st_size == size // 2
        await _assert_fresh_and_working(ledger, clock)


async def test_two_corruptions_in_the_same_second_keep_both_files(db_path: Path, clock: ManualClock) -> None:
    moved: list[Path] = []
    for _ in range(2):
        _write_garbage(db_path)
        async with Ledger(db_path, clock) as ledger:
            assert ledger.corrupted_moved_to is not None
            moved.append(ledger.corrupted_moved_to)
    assert moved[0] != moved[1]
    assert all(path.read_bytes() == GARBAGE for path in moved)


async def test_an_unopenable_path_is_an_error_not_corruption(tmp_path: Path, clock: ManualClock) -> None:
    # A directory where the file should be: SQLite cannot open it, but nothing is damaged or moved.
    db_path = tmp_path / "ledger.db"
    db_path.mkdir()
    with pytest.raises(LedgerError, match="cannot open"):
        async with Ledger(db_path, clock):
            pass
    assert db_path.is_dir()
    assert _names(tmp_path) == ["ledger.db"]


def test_move_aside_takes_the_side_files(tmp_path: Path, clock: ManualClock) -> None:
    db_path = tmp_path / "ledger.db"
    for suffix, content in (("", b"db"), ("-wal", b"wal"), ("-shm", b"shm")):
        db_path.with_name(db_path.name + suffix).write_bytes(content)
    moved = move_aside(db_path, clock)
    assert moved.name == "ledger.db.corrupt-20270115T080000Z"
    assert _names(tmp_path) == [
        "ledger.db.corrupt-20270115T080000Z",
        "ledger.db.corrupt-20270115T080000Z-shm",
        "ledger.db.corrupt-20270115T080000Z-wal",
    ]
    assert moved.with_name(moved.name + "-wal").read_bytes() == b"wal"


def _moved_aside(db_path: Path, clock: ManualClock) -> Path:
    for suffix, content in (("", b"p-secret db"), ("-wal", b"wal"), ("-shm", b"shm")):
        db_path.with_name(db_path.name + suffix).write_bytes(content)
    return move_aside(db_path, clock)


async def test_corrupt_files_are_kept_for_a_post_mortem_then_deleted(
    tmp_path: Path, clock: ManualClock
) -> None:
    db_path = tmp_path / "ledger.db"
    old = _moved_aside(db_path, clock)
    clock.advance(6 * 86_400)
    recent = _moved_aside(db_path, clock)
    (tmp_path / "ledger.db.corrupt-notes.txt").write_text("an operator's file: not ours, never deleted")
    clock.advance(1.5 * 86_400)  # old: 7.5 days, recent: 1.5 days
    async with Ledger(db_path, clock, corrupt_keep_days=7) as ledger:
        assert not old.exists() and not old.with_name(old.name + "-wal").exists()
        assert recent.exists() and recent.with_name(recent.name + "-shm").exists()
        # An erasure takes the rest at once: a moved-aside file cannot be edited and may hold the shopper.
        await ledger.forget_shopper("p-secret", report=False)
        assert not recent.exists() and not recent.with_name(recent.name + "-wal").exists()
    assert _names(tmp_path) == ["ledger.db", "ledger.db.corrupt-notes.txt"]


@pytest.mark.parametrize(
    ("code", "corrupt"),
    [
        (sqlite3.SQLITE_CORRUPT, True),
        (sqlite3.SQLITE_NOTADB, True),
        (779, True),  # SQLITE_CORRUPT_INDEX: extended codes keep the primary code in the low byte
        (sqlite3.SQLITE_BUSY, False),
        (sqlite3.SQLITE_CANTOPEN, False),
        (sqlite3.SQLITE_IOERR, False),
        (sqlite3.SQLITE_ERROR, False),  # e.g. a bad statement in a migration
    ],
)
def test_only_damage_counts_as_corruption(code: int, corrupt: bool) -> None:
    exc = sqlite3.DatabaseError("x")
    exc.sqlite_errorcode = code
    assert is_corruption(exc) is corrupt
    assert is_corruption(sqlite3.DatabaseError("no code")) is False
