"""The gateway's side of the `campaign_exposure` change kind (issue 16): parsed strictly (a bad one is a counted
parse rejection, the rest of the page applies), stored in `campaign_exposures` only while the shopper's
`measurement` consent here is a grant, deleted by a delete, a withdrawal here or an erasure, and listed in the
shopper's export."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock, iso_utc
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger
from edge.privacy.export import ExportContext, Retention, build_export
from edge.sync.parse import parse_page
from edge.sync.wire import Change, ChangeKind

AT = "2026-11-01T10:00:00Z"
DAY = 86_400.0


def change(seq: int, kind: str, id_: str, op: str = "upsert", **data: object) -> dict[str, object]:
    return {"seq": seq, "kind": kind, "id": id_, "op": op, "at": AT, "data": data}


def exposure(seq: int, id_: str = "cx-1", **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "shopper_id": "p-1",
        "campaign_id": "spring-run",
        "at": AT,
        "skus": ["SOCK-1", "SOCK-1", "SOCK-2"],
        "category": "sports",
        **overrides,
    }
    return change(seq, "campaign_exposure", id_, **data)


def test_a_campaign_exposure_is_normalised() -> None:
    parsed = parse_page(
        {"changes": [exposure(1), change(2, "campaign_exposure", "cx-1", op="delete")], "cursor": "2"}
    )
    upsert, delete = parsed.changes
    assert upsert.kind is ChangeKind.CAMPAIGN_EXPOSURE
    assert upsert.data == {
        "shopper_id": "p-1",
        "campaign_id": "spring-run",
        "at_wall": upsert.data["at_wall"],
        "skus": ("SOCK-1", "SOCK-2"),  # a SKU named twice is one
        "category": "sports",
    }
    assert iso_utc(upsert.data["at_wall"]) == "2026-11-01T10:00:00.000Z"
    assert (delete.op, delete.data) == ("delete", {})
    assert not parsed.rejected


@pytest.mark.parametrize(
    "overrides",
    [
        {"shopper_id": ""},
        {"shopper_id": None},
        {"campaign_id": "x" * 500},
        {"skus": "SOCK-1"},
        {"skus": ["ok", ""]},
        {"skus": ["a\nb"]},
        {"skus": [f"s-{n}" for n in range(65)]},
        {"skus": [7]},
        {"category": "cars"},
        {"skus": [], "category": None},  # promotes nothing: it could match no sale
    ],
)
def test_a_bad_campaign_exposure_is_a_counted_rejection_and_the_page_applies(
    overrides: dict[str, Any],
) -> None:
    parsed = parse_page(
        {
            "changes": [exposure(1, "cx-ok"), exposure(2, "cx-bad", **overrides), exposure(3, "cx-ok2")],
            "cursor": "3",
        }
    )
    assert [c.id for c in parsed.changes] == ["cx-ok", "cx-ok2"]
    assert parsed.rejected == {"bad_campaign_exposure": 1}


def test_a_bad_time_is_a_bad_time() -> None:
    parsed = parse_page({"changes": [exposure(1, at="soon")], "cursor": "1"})
    assert parsed.changes == []
    assert parsed.rejected == {"bad_time": 1}


# ----- the replica -----
@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
async def ledger(db_path: Path, clock: ManualClock) -> AsyncIterator[Ledger]:
    async with Ledger(db_path, clock) as opened:
        yield opened


def pulled(seq: int, id_: str, shopper: str, at_wall: float, op: str = "upsert") -> Change:
    data: dict[str, Any] = (
        {
            "shopper_id": shopper,
            "campaign_id": "spring-run",
            "at_wall": at_wall,
            "skus": ("SOCK-1",),
            "category": None,
        }
        if op == "upsert"
        else {}
    )
    return Change(seq=seq, kind=ChangeKind.CAMPAIGN_EXPOSURE, id=id_, op=op, at_wall=at_wall, data=data)  # type: ignore[arg-type]


def rows(path: Path) -> list[tuple[str, str]]:
    """The table itself, read beside the open ledger (WAL lets a reader in)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return [
            (str(exposure_id), str(shopper))
            for exposure_id, shopper in db.execute(
                "SELECT exposure_id, shopper_id FROM campaign_exposures ORDER BY exposure_id"
            )
        ]


async def test_stored_only_with_measurement_and_gone_with_a_delete_a_withdrawal_or_an_erasure(
    ledger: Ledger, clock: ManualClock, db_path: Path
) -> None:
    now = clock.wall()
    await ledger.set_consent(ConsentRow("p-1", Purpose.MEASUREMENT, True, now - DAY, "app"))
    await ledger.set_consent(ConsentRow("p-2", Purpose.MEASUREMENT, False, now - DAY, "app"))
    result = await ledger.replica.apply_page(
        [
            pulled(1, "cx-1", "p-1", now - 60),
            pulled(2, "cx-2", "p-2", now - 60),
            pulled(3, "cx-3", "p-3", now - 60),
        ],
        "c1",
    )
    # p-2 withdrew here (ahead of the cloud), p-3 never granted here: refused as stale.
    assert rows(db_path) == [("cx-1", "p-1")]
    assert result.applied == {"campaign_exposure": 1}
    assert result.stale == {"campaign_exposure": 2}

    await ledger.replica.apply_page([pulled(4, "cx-1", "p-1", now, op="delete")], "c2")
    assert rows(db_path) == []

    # A withdrawal at the store takes them at once, before the cloud's deletes arrive.
    await ledger.replica.apply_page([pulled(5, "cx-4", "p-1", now - 60)], "c3")
    assert rows(db_path) == [("cx-4", "p-1")]
    await ledger.set_consent(ConsentRow("p-1", Purpose.MEASUREMENT, False, now, "kiosk"))
    assert rows(db_path) == []

    # An erasure removes them, and a late page never brings one back.
    await ledger.set_consent(ConsentRow("p-1", Purpose.MEASUREMENT, True, now + 1, "app"))
    await ledger.replica.apply_page([pulled(6, "cx-5", "p-1", now - 60)], "c4")
    assert rows(db_path) == [("cx-5", "p-1")]
    await ledger.forget_shopper("p-1", report=False)
    assert rows(db_path) == []
    await ledger.replica.apply_page([pulled(7, "cx-6", "p-1", now - 60)], "c5")
    assert rows(db_path) == []


async def test_a_rebuild_after_a_cursor_reset_sweeps_the_ones_the_cloud_no_longer_has(
    ledger: Ledger, clock: ManualClock, db_path: Path
) -> None:
    now = clock.wall()
    await ledger.set_consent(ConsentRow("p-1", Purpose.MEASUREMENT, True, now - DAY, "app"))  # queued: kept
    await ledger.replica.apply_page(
        [pulled(1, "cx-kept", "p-1", now - 60), pulled(2, "cx-gone", "p-1", now - 60)], "old.2", complete=True
    )
    await ledger.replica.begin_rebuild()
    last = await ledger.replica.apply_page([pulled(1, "cx-kept", "p-1", now - 60)], "new.1", complete=True)
    assert last.swept is not None
    assert last.swept.campaign_exposures == ("cx-gone",)
    assert rows(db_path) == [("cx-kept", "p-1")]


async def test_the_shoppers_export_lists_them_with_when_they_go(ledger: Ledger, clock: ManualClock) -> None:
    now = clock.wall()
    await ledger.set_consent(ConsentRow("p-1", Purpose.MEASUREMENT, True, now - DAY, "app"))
    await ledger.replica.apply_page([pulled(1, "cx-1", "p-1", now - DAY)], "c1")
    retention = Retention(
        decisions_s=90 * DAY,
        exposures_s=90 * DAY,
        device_settings_s=90 * DAY,
        staff_interactions_s=90 * DAY,
        campaign_exposures_s=30 * DAY,
    )
    document = build_export(await ledger.privacy_rows("p-1"), ExportContext("s1", now, retention), None)
    assert document["campaign_exposures"] == [
        {
            "campaign": "spring-run",
            "at": iso_utc(now - DAY),
            "skus": ["SOCK-1"],
            "category": None,
            "deleted_by": iso_utc(now + 29 * DAY),
        }
    ]
    assert document["retention_days"]["campaign_exposures"] == 30
