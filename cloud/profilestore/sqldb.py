"""The seam between the storage logic and a database: connections, lanes, and the change-log primitives.

SQL here and in the modules that use it is written once for SQLite and PostgreSQL, with ``$n`` parameters.
A backend supplies a ``Database``: snapshot reads, and write transactions serialised per ``Lane`` so that
sequence numbers are taken, and become visible, in commit order (see ``postgres.py`` for why that matters).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from enum import Enum
from typing import Any, Final, Protocol

from profilestore.jsonbody import dumps
from storecontract.sync import ChangeKind, Op

# Per-entry overhead of a change or event beyond its data, for the page byte budget.
ENTRY_OVERHEAD: Final = 160


class Lane(Enum):
    """What a write transaction serialises on: the change log, or the receive order of pushed events."""

    CHANGES = "changes"
    EVENTS = "events"


class Connection(Protocol):
    """One connection inside a transaction. SQL uses ``$1..$n`` placeholders."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run ``sql``; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]: ...

    async def fetch_any(self, sql: str, values: Sequence[str], pg_type: str) -> list[Sequence[Any]]:
        """Rows of ``sql`` whose ``{ANY}`` is "is one of ``values``" (the only argument of ``sql``)."""
        ...


class Database(Protocol):
    @property
    def instance(self) -> str: ...

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A read-only snapshot of committed data."""
        ...

    def writing(self, *lanes: Lane) -> AbstractAsyncContextManager[Connection]:
        """A transaction holding ``lanes`` (taken in Lane order) until it commits or rolls back."""
        ...

    async def ping(self) -> None: ...


NEXT: Final = "UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value"
LAST: Final = "SELECT value FROM counters WHERE name = $1"


async def one(conn: Connection, sql: str, *args: Any) -> Sequence[Any] | None:
    rows = await conn.fetch(sql, *args)
    return rows[0] if rows else None


async def next_value(conn: Connection, counter: str, count: int) -> int:
    row = await one(conn, NEXT, count, counter)
    if row is None:  # the migrations insert both counters
        raise RuntimeError(f"counter {counter} missing")
    return int(row[0])


async def append_change(
    conn: Connection,
    kind: ChangeKind,
    key_id: str,
    op: Op,
    data: dict[str, Any],
    now_us: int,
    *,
    key: str,
    shopper_id: str | None = None,
    store_id: str | None = None,
) -> int:
    """Append one change (the next seq) in place of the earlier changes of ``key``; the new seq.

    ``shopper_id``: the shopper it is about (an erasure removes it); ``store_id``: the only store that pulls
    it (None: every store).
    """
    await conn.execute("DELETE FROM changes WHERE compact_key = $1", key)
    seq = await next_value(conn, "changes", 1)
    await conn.execute(
        "INSERT INTO changes (seq, kind, id, op, at_us, data, compact_key, shopper_id, store_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        seq,
        kind.value,  # the plain string: neither driver should see an enum
        key_id,
        op,
        now_us,
        dumps(data),
        key,
        shopper_id,
        store_id,
    )
    return seq
