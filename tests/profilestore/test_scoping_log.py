"""The change log under scoping: a version-2 database migrated to 3 (its shoppers were every store's), and a
pull's plan on PostgreSQL (it reads the rows it returns and the changes for every store, never another
store's)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from profilestore.const import PAGE_BUDGET_BYTES
from profilestore.postgres import SERVER_SETTINGS
from profilestore.schema import SCHEMA_VERSION
from profilestore.sqlstore import PULL_SQL
from profilestore.storage import Storage, open_storage
from tests.profilestore.olddb import make_database, schema_version
from tests.support.profilestore import plan_reads

US = 1_000_000
T0 = 1_800_000_000 * US
_CHANGE = "INSERT INTO changes (seq, kind, id, op, at_us, data, compact_key, shopper_id, store_id) VALUES "
VERSION_2 = [
    "INSERT INTO meta (name, value) VALUES ('instance', '0123456789abcdef')",
    "INSERT INTO stores (store_id, token_sha256, created_us, updated_us)"
    " VALUES ('sa', 'a', 1, 1), ('sb', 'b', 1, 1)",
    "INSERT INTO profiles (shopper_id, profile, updated_us) VALUES ('p-old', '{\"visits\":1}', 5),"
    " ('p-other', '{\"visits\":2}', 5)",
    "INSERT INTO consents (shopper_id, purpose, granted, at_us, source)"
    " VALUES ('p-old', 'presence_ble', TRUE, 5, 'app')",
    "INSERT INTO orders (order_id, store_id, shopper_id, reference, counter, ready_us, updated_us)"
    " VALUES ('web-1', 'sa', 'p-old', 'A-1', 'Desk', 5, 5)",
    _CHANGE
    + "(1, 'profile', 'p-old', 'upsert', 5, '{\"profile\":{\"visits\":1}}', 'profile:p-old', 'p-old', NULL)",
    _CHANGE + "(2, 'consent', 'p-old', 'upsert', 5, '{\"purpose\":\"presence_ble\",\"granted\":true,"
    '"at":"1970-01-01T00:00:00.000005Z","source":"app"}\', \'consent:p-old:presence_ble\', \'p-old\', NULL)',
    _CHANGE + "(3, 'eid_key', 'p-old', 'upsert', 5, '{\"identity_key\":\"MDEyMzQ1Njc4OWFiY2RlZg==\","
    "\"rotation_exponent\":10,\"clock_offset_s\":0}', 'eid_key:p-old', 'p-old', NULL)",
    _CHANGE + "(4, 'order', 'web-1', 'upsert', 5, '{}', 'order:sa:web-1', 'p-old', 'sa')",
    _CHANGE + "(5, 'profile', 'p-other', 'upsert', 5, '{\"profile\":{\"visits\":2}}', 'profile:p-other',"
    " 'p-other', NULL)",
    "UPDATE counters SET value = 5 WHERE name = 'changes'",
]


async def pulled(
    storage: Storage, store_id: str, after: int = 0
) -> list[tuple[str, str, str, dict[str, Any]]]:
    page = await storage.changes(after, 1000, PAGE_BUDGET_BYTES, store_id=store_id)
    assert not page.more
    return [(change.kind, change.id, change.op, change.data) for change in page.changes]


async def test_a_version_2_database_keeps_its_shoppers_for_every_store_until_they_are_written(
    db_url: str,
) -> None:
    await make_database(db_url, 2, VERSION_2)
    async with open_storage(db_url) as storage:
        assert await schema_version(db_url) == SCHEMA_VERSION == 4
        legacy = [("profile", "p-old"), ("consent", "p-old"), ("eid_key", "p-old"), ("profile", "p-other")]
        assert [change[:2] for change in await pulled(storage, "sb")] == legacy
        assert [change[:2] for change in await pulled(storage, "sa")] == [
            *legacy[:3],
            ("order", "web-1"),
            legacy[3],
        ]

        # The first write about p-old scopes them: every store forgets what version 2 sent it (deletes for
        # every store; "forget", not a withdrawal), then their home store gets their state.
        outcome = await storage.put_profile(
            "p-old", {"visits": 3, "email": "x@example.com"}, T0, home_store="sa"
        )
        assert (outcome.stores, outcome.home_store) == (1, "sa")
        forget = [
            ("eid_key", "p-old", "delete", {}),
            ("profile", "p-old", "delete", {}),
            ("consent", "p-old", "delete", {"purpose": "presence_ble"}),
        ]
        assert await pulled(storage, "sb", 5) == forget
        consent = {
            "purpose": "presence_ble",
            "granted": True,
            "at": "1970-01-01T00:00:00.000005Z",
            "source": "app",
        }
        assert await pulled(storage, "sa", 5) == [
            *forget,
            ("profile", "p-old", "upsert", {"profile": {"visits": 3}}),  # no e-mail: never served
            ("consent", "p-old", "upsert", consent),  # (the cloud holds no EID key for them)
        ]
        # p-other, not written since, is still every store's.
        assert ("profile", "p-other") in [change[:2] for change in await pulled(storage, "sb")]
        # The order's key was renamed: a new version of the order replaces the old entry.
        await storage.put_order("web-1", "sa", "p-old", "A-2", "Desk", T0, T0)
        assert [change[:3] for change in await pulled(storage, "sa") if change[0] == "order"] == [
            ("order", "web-1", "upsert")
        ]


# ----- the pull's plan on PostgreSQL -----
STORES = 200
ROWS = 100_000
BIG = "store-big"  # 2% of the log: a backlog of 2,000 changes, four pages
GLOBAL_EVERY = 1_000  # one change in a thousand is for every store (offers, inventory, token keys)


def _row(seq: int) -> tuple[Any, ...]:
    if seq % GLOBAL_EVERY == 0:
        store = None
    elif seq % 50 == 1:
        store = BIG
    else:
        store = f"store-{seq % STORES:03d}"
    return (
        seq,
        "profile",
        f"p{seq}",
        "upsert",
        T0,
        '{"profile":{}}',
        f"profile:{store}/p{seq}",
        f"p{seq}",
        store,
    )


async def test_a_pull_reads_its_own_rows_and_the_global_ones_never_another_stores(pg_url: str) -> None:
    async with open_storage(pg_url):
        pass  # the schema
    conn = await asyncpg.connect(pg_url, server_settings=SERVER_SETTINGS)  # as the server's connections
    try:
        columns = ["seq", "kind", "id", "op", "at_us", "data", "compact_key", "shopper_id", "store_id"]
        await conn.copy_records_to_table(
            "changes", records=[_row(seq) for seq in range(1, ROWS + 1)], columns=columns
        )
        await conn.execute("ANALYZE changes")
        explain = await conn.prepare("EXPLAIN (ANALYZE, FORMAT JSON) " + PULL_SQL)
        cases = [  # (store, cursor): a backlog of four pages; a page's worth; nearly up to date
            (BIG, 0),
            ("store-007", 0),
            (BIG, ROWS - 5_000),
            ("store-007", ROWS - 5_000),
        ]
        # A prepared statement gets a generic plan after five runs: both kinds of plan are checked.
        for _ in range(2):
            for store, after in cases * 3:
                plan = json.loads(await explain.fetchval(after, 501, store))[0]["Plan"]
                read, removed, indexes = plan_reads(plan)
                returned = int(plan["Actual Rows"])
                global_after = (ROWS - after) // GLOBAL_EVERY
                assert removed == 0, (store, after, plan)  # no other store's row was looked at
                assert "changes_pkey" not in indexes, (store, after)
                assert read <= returned + global_after + 1, (store, after, read, returned)
    finally:
        await conn.close()
