"""The decisions an off-policy evaluation reads (``edge/measure/ope.py``): streamed from a ledger file.

Each function takes a plain ``sqlite3.Connection`` (``edge.ledger.readonly.read_only`` beside a running
gateway); nothing is written. Times are unix seconds on the gateway's wall clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple, TypeAlias

# Rows fetched from the cursor at a time: streamed, never the whole period in memory.
_FETCH: Final = 1_000

# A ledger connection as the evaluation holds it (read-only beside a running gateway): named here so that
# code outside the ledger needs no SQLite import of its own.
Connection: TypeAlias = sqlite3.Connection


@contextmanager
def snapshot(conn: Connection) -> Iterator[Connection]:
    """One read transaction around several queries, so they see the same rows while the gateway writes;
    a no-op inside a transaction the caller already holds."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if began:
            conn.rollback()


class LoggedRow(NamedTuple):
    """One identified decision as logged (a tuple: a million of them pass through, one at a time)."""

    decision_id: str
    at_wall: float
    display_id: str
    zone: str
    offer_id: str | None
    propensity: float
    holdout: bool
    candidates: str  # JSON, edge.ledger.ops.candidates_json
    context: bytes | None  # edge/decide/logged.py


def identified_decisions(conn: sqlite3.Connection, since: float, until: float) -> Iterator[LoggedRow]:
    """The decisions made in ``[since, until)`` whose shopper was kept (``measurement``), by time then id:
    the order ``edge.ledger.measure.decision_rewards`` yields their rewards in (the ``decisions_at`` index)."""
    cursor = conn.execute(
        "SELECT decision_id, at_wall, display_id, zone, offer_id, propensity, holdout, candidates, context "
        "FROM decisions WHERE at_wall >= ? AND at_wall < ? AND shopper_id IS NOT NULL "
        "ORDER BY at_wall, decision_id",
        (since, until),
    )
    while rows := cursor.fetchmany(_FETCH):
        for row in rows:
            yield LoggedRow(
                str(row[0]),
                float(row[1]),
                str(row[2]),
                str(row[3]),
                None if row[4] is None else str(row[4]),
                float(row[5]),
                bool(row[6]),
                str(row[7]),
                None if row[8] is None else bytes(row[8]),
            )


def anonymous_decisions(conn: sqlite3.Connection, since: float, until: float) -> int:
    """How many decisions in ``[since, until)`` have no shopper kept: no outcome to evaluate them by."""
    row = conn.execute(
        "SELECT count(*) FROM decisions WHERE at_wall >= ? AND at_wall < ? AND shopper_id IS NULL",
        (since, until),
    ).fetchone()
    return int(row[0])
