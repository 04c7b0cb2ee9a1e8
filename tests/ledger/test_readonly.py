"""Reading a ledger file beside its gateway (installer tools): consents on record, read-only."""

from __future__ import annotations

from pathlib import Path

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger
from edge.ledger.readonly import granted


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


async def test_granted_consents_are_read_beside_the_writer_and_nothing_is_written(
    db_path: Path, clock: ManualClock
) -> None:
    assert granted(db_path, Purpose.PRESENCE_BLE) == frozenset()  # no ledger yet: nobody, and no file made
    assert not db_path.parent.exists()
    rows = [
        ("a", Purpose.PRESENCE_BLE, True),
        ("b", Purpose.PRESENCE_BLE, False),
        ("c", Purpose.PERSONALIZATION, True),
    ]
    async with Ledger(db_path, clock) as ledger:
        for shopper, purpose, on in rows:
            await ledger.set_consent(ConsentRow(shopper, purpose, on, clock.wall(), "seed"))
        # The gateway still holds the file open (WAL): a tool reads what is committed.
        assert granted(db_path, Purpose.PRESENCE_BLE) == frozenset({"a"})
        await ledger.set_consent(ConsentRow("a", Purpose.PRESENCE_BLE, False, clock.wall() + 1, "app"))
        assert granted(db_path, Purpose.PRESENCE_BLE) == frozenset()  # a withdrawal counts at once
    before = _stamp(db_path)
    assert granted(db_path, Purpose.PERSONALIZATION) == frozenset({"c"})
    # Read-only: the database file is untouched (SQLite may still create empty -wal/-shm files beside it).
    assert _stamp(db_path) == before


def test_a_file_that_is_not_a_ledger_yet_has_no_consents(tmp_path: Path) -> None:
    empty = tmp_path / "ledger.sqlite"
    empty.touch()  # created by a gateway that has not migrated it yet
    assert granted(empty, Purpose.PRESENCE_BLE) == frozenset()
