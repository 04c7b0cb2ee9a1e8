"""``ledger.context``: the store's context for decisions (docs/context.md): the newest weather reading in
``store_context`` (schema step 15), and the week's sales per SKU and category read from ``conversion_items``
(step 12) for the local trends.

The weather row is replaced only by a newer observation, whichever its source, so the cloud's page and the
sensor's message cannot undo each other by arriving late; it is judged stale by its own time when it is read
back, never by when it was stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge.ledger.readonly import read_only
from edge.ledger.writer import Read, Submit, Tx

WEATHER: Final = "weather"
# How far ahead of the gateway's clock a reading may be dated (edge/context/weather.py MAX_AHEAD_S says why).
WEATHER_AHEAD_S: Final = 300.0
_UPSERT_NEWER: Final = (
    "INSERT INTO store_context (name, source, observed_wall, data) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET source = excluded.source, observed_wall = excluded.observed_wall, "
    "data = excluded.data WHERE excluded.observed_wall > store_context.observed_wall RETURNING 1"
)
# One row per (sku, category) sold in the window: bounded by the store's assortment, not by its sales, so the
# read costs one range scan of conversions_at and a small answer however busy the week was.
_SALES: Final = (
    "SELECT i.sku, i.category, COUNT(*) FROM conversion_items AS i "
    "JOIN conversions AS c ON c.event_id = i.event_id "
    "WHERE c.at_wall >= ? AND c.at_wall <= ? GROUP BY i.sku, i.category"
)


@dataclass(slots=True, frozen=True)
class StoredContext:
    """One ``store_context`` row: its source, when it was observed, its data (JSON object)."""

    source: str
    observed_wall: float
    data: Mapping[str, Any]


def store_weather(tx: Tx, source: str, observed_wall: float, data: Mapping[str, Any]) -> bool:
    """Keep a weather reading if it is newer than the one kept (in the caller's transaction); True if kept."""
    encoded = json.dumps(dict(data), separators=(",", ":"), allow_nan=False)
    return bool(tx.returning(_UPSERT_NEWER, (WEATHER, source, observed_wall, encoded)))


def _sales(path: Path, since_wall: float, until_wall: float) -> list[tuple[str, str | None, int]]:
    with read_only(path) as db:
        rows = db.execute(_SALES, (since_wall, until_wall)).fetchall()
    return [
        (str(sku), None if category is None else str(category), int(lines)) for sku, category, lines in rows
    ]


class ContextStore:
    """The ledger's facade for the store's context; shares its single writer and read lock, except for the
    week's sales, read on a connection of their own (``path``)."""

    def __init__(self, submit: Submit, read: Read, path: Path) -> None:
        self._submit = submit
        self._read = read
        self._path = path

    async def put_weather(self, source: str, observed_wall: float, data: Mapping[str, Any]) -> bool:
        """A local sensor's reading, durable before it returns; True if it was newer than the one kept."""
        return await self._submit(lambda tx: store_weather(tx, source, observed_wall, data))

    async def weather(self) -> StoredContext | None:
        """The reading kept (start-up), or None; a row that does not decode is no reading."""
        rows = await self._read(
            "SELECT source, observed_wall, data FROM store_context WHERE name = ?", (WEATHER,)
        )
        if not rows:
            return None
        source, observed_wall, data = rows[0]
        try:
            decoded = json.loads(data)
        except (TypeError, ValueError):
            return None
        return (
            StoredContext(str(source), float(observed_wall), decoded) if isinstance(decoded, dict) else None
        )

    async def sales_by_sku(self, since_wall: float, until_wall: float) -> list[tuple[str, str | None, int]]:
        """(sku, the line's category or None, lines sold) of the sales dated in ``since_wall..until_wall``.

        A busy store's week is ~200,000 lines: grouping them takes a few hundred ms. That must not hold the
        ledger's lock (the writer waits on it: check-ins would stall), so it runs in a worker thread on a
        read-only connection of its own, which WAL lets read beside the writer.
        """
        return await asyncio.to_thread(_sales, self._path, since_wall, until_wall)
