"""Retention you can prove: every table of the schema, filled at chosen ages through the ledger's API, purged by
the injected clock; each history table keeps a row exactly until its bound (one second either side), state
tables keep theirs; profiles of shoppers not seen are evicted; config bounds; space given back."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from edge.clock import ManualClock
from edge.config import ConfigError, load_settings
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger, Refusal, Retention, retention
from edge.ledger import seen as seen_module
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.migrations import SCHEMA_STEPS, SCHEMA_VERSION, migrate
from edge.ledger.retention import VACUUM_STEP_PAGES
from edge.ledger.seen import SEEN_EVERY_S
from edge.sync.wire import Change, ChangeKind, EventClass

DAY = 86_400.0
# Each table a different number of days, so a purge that mixed two tables' bounds up fails.
RETENTION = Retention(
    decisions_days=10,
    exposures_days=6,
    device_settings_days=7,
    staff_interactions_days=8,
    privacy_audit_days=90,
    dead_letters_days=3,
    collected_orders_days=2,
    conversions_days=5,
    campaign_exposures_days=6,
    profiles_unseen_days=4,
)
# Every table of the schema and the column that names a row of it (what the checks compare).
TABLES = {
    "decisions": "decision_id",
    "exposures": "decision_id || '@' || display_id",
    "device_settings": "reason",
    "device_setting_shoppers": "shopper_id",
    "staff_interactions": "notice_id",
    "privacy_audit": "detail",
    "dead_letter": "reason",
    "pickup_orders": "order_id",
    "conversions": "lane",
    "conversion_items": "sku",
    "campaign_exposures": "exposure_id",
    "profiles": "shopper_id",
    "shopper_seen": "shopper_id",
    "jti": "jti",
    "consents": "shopper_id || ':' || purpose",
    "eid_keys": "shopper_id",
    "token_keys": "kid",
    "revoked_keys": "kid",
    "offers": "offer_id",
    "inventory": "offer_id",
    "tombstones": "'tombstone'",
    "ledger_secrets": "name",
    "clock_marks": "mark",
    "sync_state": "key",
    "rebuild_seen": "id",
    "outbox": "class",
    "outbox_totals": "class",
    "outbox_parked": "reason",
    "dead_letter_totals": "id",
    "store_context": "name || ':' || source",
}
STATE = {
    "consents": ["p-kept:measurement"],
    "eid_keys": ["p-kept"],
    "token_keys": ["kid-live"],
    "revoked_keys": ["kid-gone"],
    "offers": ["offer-1"],
    "inventory": ["offer-1"],
    "tombstones": ["tombstone"],
    "ledger_secrets": ["tombstone_key"],
    "sync_state": ["cursor"],
    "rebuild_seen": [],
    "outbox_totals": [0, 1, 2],
    "outbox_parked": [],
    "dead_letter_totals": [0],
    # the store's weather: one row, replaced by a newer reading, judged stale when read (never purged)
    "store_context": ["weather:cloud"],
}


def change(seq: int, kind: ChangeKind, id_: str, at: float, op: str = "upsert", **data: Any) -> Change:
    return Change(seq=seq, kind=kind, id=id_, op=op, at_wall=at, data=data)  # type: ignore[arg-type]


def snapshot(path: Path) -> dict[str, list[object]]:
    """Every table's rows by name, read beside the open ledger (WAL lets a reader in)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert names - {"sqlite_sequence"} == set(TABLES), "a table without a retention test"
        return {
            table: sorted(row[0] for row in db.execute(f"SELECT {column} FROM {table}"))
            for table, column in TABLES.items()
        }


class Timeline:
    """Writes, each at its own time: run in time order on the manual clock (it never goes back)."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._writes: list[tuple[float, int, Callable[[], Awaitable[object]]]] = []

    def at(self, wall: float, write: Callable[[], Awaitable[object]]) -> None:
        self._writes.append((wall, len(self._writes), write))

    async def run(self) -> None:
        for wall, _, write in sorted(self._writes, key=lambda item: item[:2]):
            self._clock.advance(wall - self._clock.wall())
            await write()


async def _state(ledger: Ledger, start: float) -> None:
    """State tables, filled at the start: none of them may lose a row to retention."""
    await ledger.set_consent(ConsentRow("p-kept", Purpose.MEASUREMENT, True, start, "app"))
    await ledger.replica.apply_page(
        [
            change(
                1,
                ChangeKind.EID_KEY,
                "p-kept",
                start,
                identity_key=bytes(16),
                rotation_exponent=10,
                clock_offset_s=0,
            ),
            change(2, ChangeKind.TOKEN_KEY, "kid-live", start, public_key_pem="-----BEGIN PUBLIC KEY-----"),
            change(3, ChangeKind.TOKEN_KEY, "kid-gone", start, op="delete"),
            change(4, ChangeKind.OFFER, "offer-1", start, offer={"id": "offer-1"}),
            change(5, ChangeKind.INVENTORY, "offer-1", start, available=True, quantity=3),
            change(
                6,
                ChangeKind.WEATHER,
                "store-1",
                start,
                temp_c=20.0,
                precipitation=False,
                forecast_max_c=None,
                observed_wall=start,
            ),
        ],
        "cursor-1",
    )
    await ledger.forget_shopper("p-erased", report=False)


async def test_every_table_keeps_a_row_exactly_until_its_bound(
    db_path: Path, clock: ManualClock, make_decision: Callable[..., Any]
) -> None:
    start = clock.wall()
    purge_at = start + 100 * DAY  # past every bound
    timeline = Timeline(clock)

    def aged(days: float) -> tuple[float, float]:
        """A row one second past ``days`` at the purge (gone), and one a second short of it (kept)."""
        return purge_at - days * DAY - 1, purge_at - days * DAY + 1

    async with Ledger(db_path, clock, retention=RETENTION) as ledger:
        await _state(ledger, start)
        # pickup orders: two to collect, one open for ever (an open order is the cloud's state)
        await ledger.replica.apply_page(
            [
                change(
                    seq,
                    ChangeKind.ORDER,
                    order,
                    start,
                    shopper_id="p-kept",
                    reference="A-1",
                    counter="Desk",
                    ready_wall=start,
                )
                for seq, order in ((6, "order-old"), (7, "order-young"), (8, "order-open"))
            ],
            "cursor-2",
        )
        # profiles: pulled at the start (their eviction counts from then), and seen later or not at all
        await ledger.replica.apply_page(
            [
                change(seq, ChangeKind.PROFILE, shopper, start, profile={"visits": seq})
                for seq, shopper in ((9, "p-unseen"), (10, "p-seen-old"), (11, "p-seen-young"), (12, "p-now"))
            ],
            "cursor",
        )

        for name, wall in zip(("old", "young"), aged(RETENTION.decisions_days), strict=True):
            timeline.at(
                wall, lambda n=name: ledger.record_decision(make_decision(f"d-{n}"), keep_shopper=True)
            )
        old, young = aged(RETENTION.exposures_days)
        # their decisions are young enough to stay: only the exposures' own bound applies
        timeline.at(old - 1, lambda: ledger.record_decision(make_decision("x"), keep_shopper=False))
        for name, wall in (("old", old), ("young", young)):
            timeline.at(
                wall,
                lambda n=name, w=wall: ledger.record_exposure(
                    decision_id="x", display_id=f"e-{n}", version=1, shown_at_wall=w, acked_at_wall=w
                ),
            )
        # a young exposure of an old decision goes with its decision
        timeline.at(
            aged(RETENTION.decisions_days)[0] + 1,
            lambda: ledger.record_exposure(
                decision_id="d-old",
                display_id="e-of-old",
                version=1,
                shown_at_wall=clock.wall(),
                acked_at_wall=purge_at - DAY,
            ),
        )
        for name, wall in zip(("old", "young"), aged(RETENTION.device_settings_days), strict=True):
            timeline.at(
                wall,
                lambda n=name: ledger.record_device_setting("light", f"ds-{n}", {"on": True}, [f"p-{n}"]),
            )
        for name, wall in zip(("old", "young"), aged(RETENTION.staff_interactions_days), strict=True):
            timeline.at(
                wall, lambda n=name: ledger.record_staff_interaction(f"n-{n}", "assisting", "t", "z", None)
            )
        for name, wall in zip(("old", "young"), aged(RETENTION.privacy_audit_days), strict=True):
            timeline.at(
                wall, lambda n=name, w=wall: ledger.record_privacy_export("p-kept", w, "staff", f"audit-{n}")
            )
        for name, wall in zip(("old", "young"), aged(RETENTION.dead_letters_days), strict=True):

            async def give_up(n: str = name, w: float = wall) -> None:
                queued = await ledger.outbox.enqueue("thing", EventClass.TELEMETRY, {"n": n})
                (entry,) = [e for e in await ledger.outbox.peek(1000, 1 << 30) if e.event_id == queued]
                await ledger.dead_letters.settle(
                    [],
                    give_up=[Refusal(entry, f"dl-{n}")],
                    now_wall=w,
                    retry_in=lambda attempt: 60.0 * attempt,
                )

            timeline.at(wall, give_up)
        for name, wall in zip(("old", "young"), aged(RETENTION.collected_orders_days), strict=True):
            timeline.at(wall, lambda n=name: ledger.collect_orders([f"order-{n}"], "pos"))
        # campaign exposures from the cloud, by when the shopper saw the campaign (p-kept has measurement)
        await ledger.replica.apply_page(
            [
                change(
                    seq,
                    ChangeKind.CAMPAIGN_EXPOSURE,
                    f"cx-{name}",
                    start,
                    shopper_id="p-kept",
                    campaign_id="spring",
                    at_wall=wall,
                    skus=("SKU-1",),
                    category=None,
                )
                for seq, name, wall in zip(
                    (20, 21), ("old", "young"), aged(RETENTION.campaign_exposures_days), strict=True
                )
            ],
            "cursor-3",
        )
        for name, wall in zip(("old", "young"), aged(RETENTION.conversions_days), strict=True):
            # by when the gateway heard the sale, whatever the POS stamped on it
            timeline.at(
                wall,
                lambda n=name, w=wall: ledger.record_conversion(
                    Conversion(
                        f"sale-{n}", w + DAY, w, f"c-{n}", "p-kept", 1.0, None, (SaleLine(f"s-{n}", 1, 1.0),)
                    ),
                    None,
                ),
            )
        old, young = aged(RETENTION.profiles_unseen_days)

        async def seen(shopper: str) -> None:
            ledger.seen.note(shopper)
            await ledger.seen.flush()

        timeline.at(old, lambda: seen("p-seen-old"))
        timeline.at(young, lambda: seen("p-seen-young"))
        timeline.at(old, lambda: seen("p-fetched"))  # a fetched profile: memory only, no row of its own
        # token claims: one ends exactly at the purge (forgotten), one a second later (kept)
        timeline.at(start, lambda: ledger.claim_jti("j-ended", purge_at))
        timeline.at(start, lambda: ledger.claim_jti("j-live", purge_at + 1))
        timeline.at(purge_at, lambda: ledger.claim_jti("j-later", purge_at + 1))
        await timeline.run()
        # seen now, written by the purge itself before it evicts
        ledger.seen.note("p-now")

        assert clock.wall() == purge_at
        before = snapshot(db_path)
        assert {table: before[table] for table in STATE} == STATE
        assert before["outbox"]  # the events of those rows, waiting for the cloud: no retention of theirs
        purged = await ledger.purge(clock.wall())

        assert purged.removed == {
            "jti": 1,
            "exposures": 2,
            "decisions": 1,
            "device_settings": 1,
            "staff_interactions": 1,
            "privacy_audit": 1,
            "dead_letters": 1,
            "collected_orders": 1,
            "conversions": 1,
            "campaign_exposures": 1,
            "profiles": 2,
            "shopper_seen": 3,
            "corrupt_files": 0,
        }
        assert sorted(purged.evicted) == ["p-fetched", "p-seen-old", "p-unseen"]
        assert snapshot(db_path) == {
            "decisions": ["d-young", "x"],
            "exposures": ["x@e-young"],
            "device_settings": ["ds-young"],
            "device_setting_shoppers": ["p-young"],
            "staff_interactions": ["n-young"],
            "privacy_audit": ["audit-young"],
            "dead_letter": ["dl-young"],
            "pickup_orders": ["order-open", "order-young"],
            "conversions": ["c-young"],
            "conversion_items": ["s-young"],
            "campaign_exposures": ["cx-young"],
            "profiles": ["p-now", "p-seen-young"],
            "shopper_seen": ["p-now", "p-seen-young"],
            "jti": ["j-later", "j-live"],
            # the purge's own marks: the latest wall time seen, and through when claims were forgotten
            "clock_marks": ["high_water", "jti_forgotten_through"],
            **STATE,
            "outbox": before["outbox"],
        }

        # Two seconds later every young row is a second past its bound; state still stays.
        clock.advance(2)
        purged = await ledger.purge(clock.wall())
        assert purged.evicted == ("p-seen-young",)
        assert snapshot(db_path) == {
            "decisions": ["x"],  # 100 days minus 6: younger than its 10
            "exposures": [],
            "device_settings": [],
            "device_setting_shoppers": [],
            "staff_interactions": [],
            "privacy_audit": [],
            "dead_letter": [],
            "pickup_orders": ["order-open"],
            "conversions": [],
            "conversion_items": [],
            "campaign_exposures": [],
            "profiles": ["p-now"],
            "shopper_seen": ["p-now"],
            "jti": [],
            "clock_marks": ["high_water", "jti_forgotten_through"],
            **STATE,
            "outbox": before["outbox"],
        }
        assert ledger.stats().purge.runs == 2
        assert ledger.stats().purge.removed["profiles"] == 3


async def test_seen_marks_are_written_once_an_hour_and_never_for_an_erased_shopper(
    ledger: Ledger, clock: ManualClock
) -> None:
    start = clock.wall()
    ledger.seen.note("p-1")
    clock.advance(SEEN_EVERY_S - 1)
    ledger.seen.note("p-1")  # within the hour: nothing new to write
    assert await ledger.seen.flush() == 1
    assert await ledger.seen.last_seen("p-1") == start
    clock.advance(1)
    ledger.seen.note("p-1")
    assert await ledger.seen.flush() == 1
    assert await ledger.seen.last_seen("p-1") == start + SEEN_EVERY_S

    # a mark pending when the shopper is erased is dropped; one noted before a pulled erasure is refused
    ledger.seen.note("p-2")
    await ledger.forget_shopper("p-2", report=False)
    ledger.seen.note("p-3")
    await ledger.replica.apply_page([change(1, ChangeKind.ERASURE, "p-3", clock.wall())], "c1")
    assert await ledger.seen.flush() == 0
    assert await ledger.seen.last_seen("p-2") is None
    assert await ledger.seen.last_seen("p-3") is None
    # erasing a shopper deletes the mark already written
    await ledger.forget_shopper("p-1", report=False)
    assert await ledger.seen.last_seen("p-1") is None
    assert ledger.seen.stats().written == 2


async def test_pending_marks_are_written_at_a_clean_close(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        ledger.seen.note("p-1")
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.seen.last_seen("p-1") == clock.wall()


async def test_an_update_from_the_cloud_is_no_visit(ledger: Ledger, clock: ManualClock) -> None:
    """A pulled profile counts from its arrival; the cloud changing it later does not keep it here."""
    arrived = clock.wall()
    await ledger.replica.apply_page(
        [change(1, ChangeKind.PROFILE, "p-1", arrived, profile={"visits": 1})], "c1"
    )
    clock.advance(DAY)
    await ledger.replica.apply_page(
        [change(2, ChangeKind.PROFILE, "p-1", clock.wall(), profile={"visits": 2})], "c2"
    )
    assert await ledger.seen.last_seen("p-1") == arrived


async def _legacy_file(path: Path, version: int) -> None:
    """A ledger as a gateway of schema ``version`` left it: no incremental vacuum, one profile, many rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute_fetchall("PRAGMA journal_mode = WAL")
        assert await migrate(db, SCHEMA_STEPS[:version]) == version
        await db.execute_fetchall("INSERT INTO profiles VALUES ('p-legacy', '{}', 1700000000.0)")
        await db.execute_fetchall(
            "INSERT INTO staff_interactions (notice_id, action, team, zone, at_wall) "
            "VALUES ('n1', 'assisting', 't', 'z', 1.0), ('n2', 'assisting', 't', 'z', 2.0)"
        )


async def test_a_ledger_from_before_is_made_incremental_once_and_keeps_its_rows(
    db_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await _legacy_file(db_path, 10)
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    with caplog.at_level(logging.WARNING, logger="edge.ledger"):
        async with Ledger(db_path, clock) as ledger:
            # step 11: a profile from before counts from the cloud's last change of it
            assert await ledger.seen.last_seen("p-legacy") == 1_700_000_000.0
            assert len(await ledger.staff_interactions()) == 2
    assert [r.getMessage() for r in caplog.records if "VACUUM" in r.getMessage()]
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge.ledger"):
        async with Ledger(db_path, clock):
            pass
    assert not [r for r in caplog.records if "VACUUM" in r.getMessage()]  # once


async def test_a_new_ledger_is_incremental_from_its_first_table(
    db_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.ledger"):
        async with Ledger(db_path, clock):
            pass
    assert not [r for r in caplog.records if "VACUUM" in r.getMessage()]  # no rewrite: born incremental
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


async def test_a_purge_that_deleted_many_rows_gives_the_space_back(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock, retention=Retention.history(1)) as ledger:
        for batch in range(40):
            await asyncio.gather(
                *(
                    ledger.record_device_setting("d", "r", {"payload": "x" * 800, "n": n}, [f"s{batch}-{n}"])
                    for n in range(100)
                )
            )
        full = await ledger.file_space()
        clock.advance(DAY + 1)
        purged = await ledger.purge(clock.wall())
        assert purged.removed["device_settings"] == 4000
        after = await ledger.file_space()
        # every page the rows held went back (the step loop ran more than once), and the file shrank
        assert purged.vacuumed_pages > VACUUM_STEP_PAGES
        assert after.free_pages == 0
        assert after.pages <= full.pages - purged.vacuumed_pages
    assert (await asyncio.to_thread(db_path.stat)).st_size == after.pages * after.page_size
    assert ledger.stats().purge.vacuumed_pages == purged.vacuumed_pages


async def test_a_purge_that_deleted_nothing_moves_no_page(ledger: Ledger, clock: ManualClock) -> None:
    await ledger.record_device_setting("d", "r", {"on": True}, [])
    purged = await ledger.purge(clock.wall())
    assert not purged.any_removed and purged.vacuumed_pages == 0


# ----- configuration ------------------------------------------------------------------------------------------


def _config(tmp_path: Path, ledger: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[store]\nid = "s"\n[[zones]]\nid = "a"\n{ledger}')
    return path


@pytest.mark.parametrize(
    ("ledger", "problem"),
    [
        (
            "[ledger.retention]\ndecisions_days = 401\n",
            "ledger.retention.decisions_days: Input should be less",
        ),
        (
            "[ledger.retention]\ndecisions_days = 0\n",
            "ledger.retention.decisions_days: Input should be greater",
        ),
        (
            "[ledger.retention]\nprivacy_audit_days = 30\n",
            "ledger.retention.privacy_audit_days: Input should be",
        ),
        (
            "[ledger.retention]\nprivacy_audit_days = 1101\n",
            "ledger.retention.privacy_audit_days: Input should",
        ),
        (
            "[ledger.retention]\ndead_letters_days = 91\n",
            "ledger.retention.dead_letters_days: Input should be",
        ),
        ("[ledger.retention]\ncollected_orders_days = 0\n", "ledger.retention.collected_orders_days: Input"),
        ("[ledger.retention]\nconversions_days = 401\n", "ledger.retention.conversions_days: Input"),
        (
            "[ledger.retention]\ncampaign_exposures_days = 0\n",
            "ledger.retention.campaign_exposures_days: Input",
        ),
        ("[ledger.retention]\nprofiles_unseen_days = 401\n", "ledger.retention.profiles_unseen_days: Input"),
        ("[ledger.retention]\nprofiles_unseen_days = 1.5\n", "ledger.retention.profiles_unseen_days: Input"),
        (
            "[ledger.retention]\ndecisions_days = 30\nexposures_days = 31\n",
            "ledger.retention.exposures_days: must not exceed decisions_days (30)",
        ),
        ("[ledger.retention]\nsightings_days = 1\n", "ledger.retention.sightings_days: Extra inputs"),
        ("[ledger]\nretention_days = 0\n", "ledger.retention_days: Input should be greater"),
    ],
)
def test_a_retention_outside_its_bounds_is_refused_by_its_key(
    tmp_path: Path, ledger: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_config(tmp_path, ledger), check_files=False)
    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith(problem), error.value.problems


def _retention(tmp_path: Path, ledger: str) -> dict[str, int]:
    return load_settings(_config(tmp_path, ledger), check_files=False).ledger.retention.model_dump()


def test_retention_days_still_sets_the_tables_it_always_covered(tmp_path: Path) -> None:
    assert _retention(tmp_path, "") == {
        "decisions_days": 90,
        "exposures_days": 90,
        "device_settings_days": 90,
        "staff_interactions_days": 90,
        "privacy_audit_days": 365,
        "dead_letters_days": 30,
        "collected_orders_days": 30,
        "conversions_days": 90,
        "campaign_exposures_days": 30,
        "profiles_unseen_days": 30,
    }
    # a configuration written before [ledger.retention]
    older = _retention(tmp_path, "[ledger]\nretention_days = 60\n")
    assert [older[key] for key in ("decisions_days", "exposures_days", "device_settings_days")] == [
        60,
        60,
        60,
    ]
    assert (older["staff_interactions_days"], older["privacy_audit_days"]) == (60, 365)
    # a table's own key wins; an exposure never outlives its decision by default
    both = _retention(tmp_path, "[ledger]\nretention_days = 60\n[ledger.retention]\ndecisions_days = 20\n")
    assert (both["decisions_days"], both["exposures_days"], both["device_settings_days"]) == (20, 20, 60)
    alone = _retention(tmp_path, "[ledger.retention]\ndecisions_days = 20\n")
    assert (alone["decisions_days"], alone["exposures_days"]) == (20, 20)


def test_the_ledger_refuses_a_retention_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="profiles_unseen_days"):
        Retention(profiles_unseen_days=0)


async def test_many_unseen_shoppers_are_evicted_and_many_marks_written_in_steps(
    ledger: Ledger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "EVICT_STEP", 2)
    monkeypatch.setattr(seen_module, "SEEN_WRITE_STEP", 2)
    shoppers = [f"p-{n}" for n in range(5)]
    await ledger.replica.apply_page(
        [
            change(n, ChangeKind.PROFILE, shopper, clock.wall(), profile={})
            for n, shopper in enumerate(shoppers)
        ],
        "c1",
    )
    for shopper in [*shoppers, "p-memory-only"]:
        ledger.seen.note(shopper)
    batches = ledger.stats().batches_committed
    assert await ledger.seen.flush() == 6
    assert ledger.stats().batches_committed - batches == 3
    clock.advance(30 * DAY + 1)
    purged = await ledger.purge(clock.wall())
    assert sorted(purged.evicted) == sorted([*shoppers, "p-memory-only"])
    assert (purged.removed["profiles"], purged.removed["shopper_seen"]) == (5, 6)
    assert (await ledger.replica.load()).profiles == {}
