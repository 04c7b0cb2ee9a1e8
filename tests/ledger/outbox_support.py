"""Helpers shared by the outbox tests: recount the outbox straight from the file, compare with its totals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.sync.wire import EventClass


def recount(path: Path) -> dict[int, tuple[int, int]]:
    """(events, bytes) per class, counted row by row through a separate connection."""
    counts = {int(cls): (0, 0) for cls in EventClass}
    with sqlite3.connect(path) as db:
        for cls, events, size in db.execute(
            "SELECT class, COUNT(*), SUM(length(body)) FROM outbox GROUP BY class"
        ):
            counts[int(cls)] = (int(events), int(size))
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
    with sqlite3.connect(path) as db:
        return [
            (int(s), str(e), int(c))
            for s, e, c in db.execute("SELECT seq, event_id, class FROM outbox ORDER BY seq")
        ]
