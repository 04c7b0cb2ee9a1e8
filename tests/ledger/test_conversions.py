"""POS sales kept for measurement (ledger step 12): one row per sale with its lines, in the same transaction as
its outbox event and with its id; once; kept without a cloud; erased with the shopper; listed in their export."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger, conversions
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.outbox import encode_event
from edge.sync.wire import EventClass


def sale(event_id: str, shopper: str | None = "ann", at: float = 1_800_000_000.0) -> Conversion:
    return Conversion(
        event_id,
        at,
        at + 2,
        "lane-1",
        shopper,
        8.25,
        "EUR",
        (SaleLine("FLAT-WHITE", 2, 3.5, "coffee"), SaleLine("4006381333931", 1, 1.25)),
    )


def event_of(conversion: Conversion) -> object:
    return encode_event(
        "conversion",
        EventClass.CONVERSION,
        {"txn_id": "T1"},
        at_wall=conversion.at_wall,
        shopper_id=conversion.shopper_id,
        event_id=conversion.event_id,
    )


def table(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return [tuple(row) for row in db.execute(sql)]


EVENT_ID = "0192f0c1-0000-7000-8000-000000000001"


async def test_a_sale_is_one_row_with_its_lines_and_its_event_in_one_transaction(
    ledger: Ledger, db_path: Path
) -> None:
    kept = sale(EVENT_ID)
    assert await ledger.record_conversion(kept, event_of(kept))  # type: ignore[arg-type]
    # redelivered: nothing new, neither row nor event
    assert not await ledger.record_conversion(kept, event_of(kept))  # type: ignore[arg-type]
    assert table(
        db_path, "SELECT event_id, at_wall, received_wall, lane, shopper_id, total, currency FROM conversions"
    ) == [(EVENT_ID, 1_800_000_000.0, 1_800_000_002.0, "lane-1", "ann", 8.25, "EUR")]
    assert table(db_path, "SELECT line, sku, category, qty, price FROM conversion_items ORDER BY line") == [
        (0, "FLAT-WHITE", "coffee", 2.0, 3.5),
        (1, "4006381333931", None, 1.0, 1.25),
    ]
    assert [entry.event_id for entry in await ledger.outbox.peek(10, 1 << 20)] == [EVENT_ID]


async def test_the_row_and_its_event_commit_together_or_not_at_all(
    ledger: Ledger, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(conversions, "insert_event", full)
    failed = sale(EVENT_ID)
    with pytest.raises(sqlite3.OperationalError):
        await ledger.record_conversion(failed, event_of(failed))  # type: ignore[arg-type]
    assert table(db_path, "SELECT count(*) FROM conversions") == [(0,)]
    assert table(db_path, "SELECT count(*) FROM conversion_items") == [(0,)]


async def test_without_a_cloud_the_sale_is_kept_and_nothing_queued(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock, outbox_max_bytes=None) as ledger:
        assert await ledger.record_conversion(sale(EVENT_ID), None)
        assert (await ledger.outbox.stats()).events == 0
    assert table(db_path, "SELECT count(*) FROM conversions") == [(1,)]


async def test_an_event_of_another_id_is_refused() -> None:
    with pytest.raises(ValueError, match="share one id"):
        conversions.insert_conversion(sale("a"), event_of(sale("b")), outbox_max_bytes=None)  # type: ignore[arg-type]


async def test_erasure_deletes_the_shoppers_sales_and_the_export_lists_them(
    ledger: Ledger, db_path: Path
) -> None:
    await ledger.record_conversion(sale("s-ann-1", "ann", 1_800_000_000.0), None)
    await ledger.record_conversion(sale("s-ann-2", "ann", 1_800_000_100.0), None)
    await ledger.record_conversion(sale("s-bob", "bob"), None)
    await ledger.record_conversion(sale("s-anon", None), None)

    rows = await ledger.privacy_rows("ann")
    assert [(c["event_id"], c["lane"], c["total"]) for c in rows.conversions] == [
        ("s-ann-2", "lane-1", 8.25),
        ("s-ann-1", "lane-1", 8.25),
    ]
    assert rows.conversions[0]["items"] == [
        {"sku": "FLAT-WHITE", "category": "coffee", "qty": 2.0, "price": 3.5},
        {"sku": "4006381333931", "category": None, "qty": 1.0, "price": 1.25},
    ]

    await ledger.forget_shopper("ann")
    assert table(db_path, "SELECT event_id FROM conversions ORDER BY event_id") == [("s-anon",), ("s-bob",)]
    assert table(db_path, "SELECT DISTINCT event_id FROM conversion_items ORDER BY event_id") == [
        ("s-anon",),
        ("s-bob",),
    ]
    assert (await ledger.privacy_rows("ann")).conversions == []
