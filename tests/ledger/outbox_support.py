"""Helpers shared by the outbox tests: recount the outbox straight from the file, compare with its totals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.ledger.outbox import ENTRY_COLUMNS, OutboxEntry, outbox_entry
from edge.sync.wire import EventClass


def entries(path: Path) -> list[OutboxEntry]:
    """Every queued event (parked ones too) decoded from the file through a separate connection, in seq order."""
    with sqlite3.connect(path) as db:
        return [outbox_entry(row) for row in db.execute(f"SELECT {ENTRY_COLUMNS} FROM outbox ORDER BY seq")]


def recount(path: Path) -> dict[int, tuple[int, int]]:
    """(events, bytes) per class, counted row by row: bytes are the decoded wire events' lengths."""
    counts = {int(cls): (0, 0) for cls in EventClass}
    for entry in entries(path):
        events, size = counts[int(entry.cls)]
        counts[int(entry.cls)] = (events + 1, size + len(entry.body))
    return counts


def totals(path: Path) -> dict[int, tuple[int, int]]:
    """(events, bytes) per class as the triggers keep them."""
    with sqlite3.connect(path) as db:
        return {
            int(c): (int(e), int(b))
            for c, e, b in db.execute("SELECT class, events, bytes FROM outbox_totals")
        }


def dropped(path: Path) -> dict[int, int]:
    with sqlite3.connect(path) as db:
        return {int(c): int(d) for c, d in db.execute("SELECT class, dropped FROM outbox_totals")}


def queued(path: Path) -> list[tuple[int, str, int]]:
    """(seq, event_id, class) of every queued event, in seq order."""
    return [(entry.seq, entry.event_id, int(entry.cls)) for entry in entries(path)]
