"""The storage logic, written once in SQL that SQLite and PostgreSQL both run (over ``sqldb.Database``).

The change log is compacted as it is written: a change replaces the earlier entries of the same key (one
profile, one consent purpose of one shopper, one offer...). A gateway at any cursor still converges, since
the newest entry of every key is after any cursor that missed an older one; and an erasure removes the
shopper's whole history from the log, not just from the current state. Shopper changes are written once
for each store that holds the shopper (``profilestore.sqlshoppers``, ``profilestore.sqlscope``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from profilestore import sqlcross, sqlscope, sqlshoppers
from profilestore.jsonbody import dumps
from profilestore.models import render_timestamp
from profilestore.sqldb import ENTRY_OVERHEAD, LAST, Connection, Database, Lane, append_change, one
from profilestore.sqlevents import list_events, push_events
from profilestore.storage import (
    KEEP,
    CampaignExposureRecord,
    ChangePage,
    ChangeRecord,
    ConsentOutcome,
    ConsentState,
    CrossRow,
    CrossTotals,
    DeleteOutcome,
    EidKeyState,
    EnrolOutcome,
    ErasureOutcome,
    EventPage,
    EventRecord,
    HomeStore,
    OrderStoreError,
    PostOutcome,
    ProfileOutcome,
    PushOutcome,
    SaleRecord,
    ShopperState,
    ShopperWrite,
    Sighting,
    TokenInUseError,
    UnknownStoreError,
)
from storecontract.sync import ChangeKind

_COLUMNS: Final = "seq, kind, id, op, at_us, data"
# A store's pull: its own changes, and those for every store, each an index range scan of changes_store
# (store_id, seq) that stops after $2 rows. So a pull reads what it returns (plus at most a page of the
# other half), however many changes the other stores have; "store_id IS NULL OR store_id = $3" would walk
# the primary key through every other store's changes after the cursor (docs/profile-store.md, "Pull cost").
PULL_SQL: Final = (
    f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM changes WHERE store_id = $3 AND seq > $1"  # noqa: S608
    f" ORDER BY seq LIMIT $2) AS own UNION ALL SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM changes"
    " WHERE store_id IS NULL AND seq > $1 ORDER BY seq LIMIT $2) AS every ORDER BY seq LIMIT $2"
)
# The whole log (admin and tests): every store's changes.
LOG_SQL: Final = f"SELECT {_COLUMNS} FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2"  # noqa: S608


def _order_key(store_id: str, order_id: str) -> str:
    # Per store as well: when an order is deleted and made again for another store, the first store's
    # delete must stay in the log (that store may not have pulled it yet). "/" is in neither id, so one key
    # names one (store, order) pair (schema 3; schema 2's "order:{store}:{order}" could name two).
    return f"order:{store_id}/{order_id}"


async def _order_deleted(conn: Connection, order_id: str, store_id: str, now_us: int) -> int:
    """Append the delete change of an order (its row already removed) for its store; the seq."""
    return await append_change(
        conn,
        ChangeKind.ORDER,
        order_id,
        "delete",
        {},
        now_us,
        key=_order_key(store_id, order_id),
        store_id=store_id,
    )


class SqlStorage:
    """``profilestore.storage.Storage`` over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def instance(self) -> str:
        return self._db.instance

    async def ping(self) -> None:
        await self._db.ping()

    # ----- stores -----
    async def put_store(self, store_id: str, token_sha256: bytes, now_us: int) -> bool:
        async with self._db.writing(Lane.CHANGES) as conn:
            owner = await one(conn, "SELECT store_id FROM stores WHERE token_sha256 = $1", token_sha256)
            if owner is not None and owner[0] != store_id:
                raise TokenInUseError("this token is registered for another store")
            updated = await conn.execute(
                "UPDATE stores SET token_sha256 = $2, updated_us = $3 WHERE store_id = $1",
                store_id,
                token_sha256,
                now_us,
            )
            if updated:
                return False
            await conn.execute(
                "INSERT INTO stores (store_id, token_sha256, created_us, updated_us) VALUES ($1, $2, $3, $3)",
                store_id,
                token_sha256,
                now_us,
            )
            return True

    async def store_token(self, store_id: str) -> bytes | None:
        async with self._db.reading() as conn:
            row = await one(conn, "SELECT token_sha256 FROM stores WHERE store_id = $1", store_id)
        return None if row is None else bytes(row[0])

    async def store_of_token(self, token_sha256: bytes) -> str | None:
        async with self._db.reading() as conn:
            row = await one(conn, "SELECT store_id FROM stores WHERE token_sha256 = $1", token_sha256)
        return None if row is None else str(row[0])

    # ----- the change log -----
    async def changes(self, after: int, limit: int, budget_bytes: int, *, store_id: str | None) -> ChangePage:
        async with self._db.reading() as conn:  # one snapshot: last_seq and the rows agree
            last = await one(conn, LAST, "changes")
            if store_id is None:
                rows = await conn.fetch(LOG_SQL, after, limit + 1)
            else:
                rows = await conn.fetch(PULL_SQL, after, limit + 1, store_id)
        page: list[ChangeRecord] = []
        spent = 0
        for seq, kind, key_id, op, at_us, data in rows[:limit]:
            spent += len(data) + ENTRY_OVERHEAD
            if page and spent > budget_bytes:
                break
            page.append(ChangeRecord(int(seq), str(kind), str(key_id), str(op), int(at_us), json.loads(data)))
        last_seq = int(last[0]) if last else 0
        more = len(rows) > len(page)
        # Nothing more for this store: every seq up to last_seq is committed (commit order) and was either
        # returned or is not for it, so the cursor may pass the other stores' changes too.
        through = page[-1].seq if more else max(after, last_seq)
        return ChangePage(page, more=more, last_seq=last_seq, through=through)

    # ----- which store holds which shopper, and the shopper writes (profilestore.sqlshoppers) -----
    async def enrol(
        self, store_id: str, sightings: Sequence[Sighting], *, reason: str, window_us: int, now_us: int
    ) -> EnrolOutcome:
        return await sqlshoppers.enrol(
            self._db, store_id, sightings, reason=reason, window_us=window_us, now_us=now_us
        )

    async def expire(self, store_id: str, now_us: int, limit: int) -> int:
        return await sqlshoppers.expire(self._db, store_id, now_us, limit)

    async def put_profile(
        self, shopper_id: str, profile: dict[str, Any], now_us: int, *, home_store: HomeStore = KEEP
    ) -> ProfileOutcome:
        return await sqlshoppers.put_profile(self._db, shopper_id, profile, now_us, home_store=home_store)

    async def put_consent(
        self, shopper_id: str, purpose: str, granted: bool, at_us: int, source: str, now_us: int
    ) -> ConsentOutcome:
        new = ConsentState(purpose, granted, at_us, source)
        return await sqlshoppers.put_consent(self._db, shopper_id, new, now_us)

    async def put_eid_key(self, shopper_id: str, key: EidKeyState, now_us: int) -> ShopperWrite:
        return await sqlshoppers.put_eid_key(self._db, shopper_id, key, now_us)

    async def delete_eid_key(self, shopper_id: str, now_us: int) -> ShopperWrite:
        return await sqlshoppers.delete_eid_key(self._db, shopper_id, now_us)

    async def erase_shopper(self, shopper_id: str, now_us: int) -> ErasureOutcome:
        # Both lanes: a push being written now must not store this shopper's id after the events are cleared.
        async with self._db.writing(Lane.CHANGES, Lane.EVENTS) as conn:
            # Before anything goes: every store that may hold something of the shopper gets the erasure.
            holders = await sqlscope.holders(conn, shopper_id)
            profile = await conn.execute("DELETE FROM profiles WHERE shopper_id = $1", shopper_id)
            consents = await conn.execute("DELETE FROM consents WHERE shopper_id = $1", shopper_id)
            eid_key = await conn.execute("DELETE FROM eid_keys WHERE shopper_id = $1", shopper_id)
            events = await conn.execute(
                "UPDATE events SET shopper_id = NULL WHERE shopper_id = $1", shopper_id
            )
            orders = await conn.fetch(
                "SELECT order_id, store_id FROM orders WHERE shopper_id = $1 ORDER BY order_id", shopper_id
            )
            await conn.execute("DELETE FROM orders WHERE shopper_id = $1", shopper_id)
            campaign_exposures = await sqlcross.erase(conn, shopper_id)
            await conn.execute("DELETE FROM store_shoppers WHERE shopper_id = $1", shopper_id)
            await conn.execute("DELETE FROM changes WHERE shopper_id = $1", shopper_id)
            # A store may hold the order already: it pulls a delete (which names no shopper).
            for order_id, store_id in orders:
                await _order_deleted(conn, str(order_id), str(store_id), now_us)
            seq = await sqlscope.erasures(conn, shopper_id, holders, now_us)
            await conn.execute(
                "INSERT INTO erasures (shopper_id, erased_us, seq) VALUES ($1, $2, $3)"
                " ON CONFLICT (shopper_id) DO UPDATE SET erased_us = excluded.erased_us, seq = excluded.seq",
                shopper_id,
                now_us,
                seq,
            )
            return ErasureOutcome(
                seq,
                profile > 0,
                consents,
                eid_key > 0,
                events,
                len(orders),
                stores=len(holders),
                campaign_exposures=campaign_exposures,
            )

    async def shopper(self, shopper_id: str) -> ShopperState | None:
        async with self._db.reading() as conn:
            return await sqlscope.read_state(conn, shopper_id)

    # ----- catalog and keys -----
    async def _put_simple(
        self,
        table: str,
        key_column: str,
        kind: ChangeKind,
        key_id: str,
        values: dict[str, Any],
        data: dict[str, Any],
        now_us: int,
    ) -> int:
        columns = [key_column, *values, "updated_us"]
        marks = ", ".join(f"${index}" for index in range(1, len(columns) + 1))
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns[1:])
        async with self._db.writing(Lane.CHANGES) as conn:
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - names are ours
                f" ON CONFLICT ({key_column}) DO UPDATE SET {updates}",
                key_id,
                *values.values(),
                now_us,
            )
            return await append_change(
                conn, kind, key_id, "upsert", data, now_us, key=f"{kind.value}:{key_id}"
            )

    async def _delete_simple(
        self, table: str, key_column: str, kind: ChangeKind, key_id: str, now_us: int
    ) -> DeleteOutcome:
        async with self._db.writing(Lane.CHANGES) as conn:
            existed = await conn.execute(f"DELETE FROM {table} WHERE {key_column} = $1", key_id)  # noqa: S608
            seq = await append_change(conn, kind, key_id, "delete", {}, now_us, key=f"{kind.value}:{key_id}")
            return DeleteOutcome(seq, existed > 0)

    async def put_token_key(self, kid: str, public_key_pem: str, now_us: int) -> int:
        data = {"public_key_pem": public_key_pem}
        return await self._put_simple("token_keys", "kid", ChangeKind.TOKEN_KEY, kid, data, data, now_us)

    async def delete_token_key(self, kid: str, now_us: int) -> DeleteOutcome:
        return await self._delete_simple("token_keys", "kid", ChangeKind.TOKEN_KEY, kid, now_us)

    async def put_offer(self, offer_id: str, offer: dict[str, Any], now_us: int) -> int:
        return await self._put_simple(
            "offers", "offer_id", ChangeKind.OFFER, offer_id, {"offer": dumps(offer)}, offer, now_us
        )

    async def delete_offer(self, offer_id: str, now_us: int) -> DeleteOutcome:
        return await self._delete_simple("offers", "offer_id", ChangeKind.OFFER, offer_id, now_us)

    async def put_inventory(self, offer_id: str, available: bool, quantity: int | None, now_us: int) -> int:
        data = {"available": available, "quantity": quantity}
        return await self._put_simple(
            "inventory", "offer_id", ChangeKind.INVENTORY, offer_id, data, data, now_us
        )

    async def delete_inventory(self, offer_id: str, now_us: int) -> DeleteOutcome:
        return await self._delete_simple("inventory", "offer_id", ChangeKind.INVENTORY, offer_id, now_us)

    # ----- pickup orders -----
    async def put_order(
        self,
        order_id: str,
        store_id: str,
        shopper_id: str,
        reference: str,
        counter: str,
        ready_us: int,
        now_us: int,
    ) -> int:
        async with self._db.writing(Lane.CHANGES) as conn:
            if await one(conn, "SELECT 1 FROM stores WHERE store_id = $1", store_id) is None:
                raise UnknownStoreError(f"no store {store_id!r} is registered")
            row = await one(conn, "SELECT store_id FROM orders WHERE order_id = $1", order_id)
            if row is not None and str(row[0]) != store_id:
                raise OrderStoreError("an order's store cannot change: delete it and create it again")
            await conn.execute(
                "INSERT INTO orders (order_id, store_id, shopper_id, reference, counter, ready_us, updated_us)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO UPDATE SET"
                " shopper_id = excluded.shopper_id, reference = excluded.reference,"
                " counter = excluded.counter, ready_us = excluded.ready_us, updated_us = excluded.updated_us",
                order_id,
                store_id,
                shopper_id,
                reference,
                counter,
                ready_us,
                now_us,
            )
            data = {
                "shopper_id": shopper_id,
                "reference": reference,
                "counter": counter,
                "ready_at": render_timestamp(ready_us),
            }
            return await append_change(
                conn,
                ChangeKind.ORDER,
                order_id,
                "upsert",
                data,
                now_us,
                key=_order_key(store_id, order_id),
                shopper_id=shopper_id,
                store_id=store_id,
            )

    async def put_weather(self, store_id: str, weather: dict[str, Any], now_us: int) -> int:
        async with self._db.writing(Lane.CHANGES) as conn:
            if await one(conn, "SELECT 1 FROM stores WHERE store_id = $1", store_id) is None:
                raise UnknownStoreError(f"no store {store_id!r} is registered")
            # No table: the change log holds the store's one current reading (compacted by its key).
            return await append_change(
                conn,
                ChangeKind.WEATHER,
                store_id,
                "upsert",
                weather,
                now_us,
                key=f"weather:{store_id}",
                store_id=store_id,
            )

    async def delete_order(self, order_id: str, now_us: int) -> DeleteOutcome | None:
        async with self._db.writing(Lane.CHANGES) as conn:
            row = await one(conn, "SELECT store_id FROM orders WHERE order_id = $1", order_id)
            if row is None:
                return None  # no store to tell
            await conn.execute("DELETE FROM orders WHERE order_id = $1", order_id)
            return DeleteOutcome(await _order_deleted(conn, order_id, str(row[0]), now_us), existed=True)

    async def collect_orders(self, store_id: str, order_ids: Sequence[str], now_us: int) -> int:
        wanted = sorted(set(order_ids))
        if not wanted:
            return 0
        async with self._db.writing(Lane.CHANGES) as conn:
            rows = await conn.fetch_any(
                "SELECT order_id, store_id FROM orders WHERE order_id {ANY}", wanted, "text"
            )
            mine = sorted(str(order_id) for order_id, owner in rows if str(owner) == store_id)
            for order_id in mine:
                await conn.execute("DELETE FROM orders WHERE order_id = $1", order_id)
                await _order_deleted(conn, order_id, store_id, now_us)
            return len(mine)

    # ----- events -----
    async def push_events(self, store_id: str, events: Sequence[EventRecord], now_us: int) -> PushOutcome:
        return await push_events(self._db, store_id, events, now_us)

    async def events(self, store_id: str | None, after: int, limit: int, budget_bytes: int) -> EventPage:
        return await list_events(self._db, store_id, after, limit, budget_bytes)

    # ----- online and offline together -----
    async def post_sale(self, sale: SaleRecord, now_us: int) -> PostOutcome:
        return await sqlcross.post_sale(self._db, sale, now_us)

    async def post_campaign_exposure(self, exposure: CampaignExposureRecord, now_us: int) -> PostOutcome:
        return await sqlcross.post_campaign_exposure(self._db, exposure, now_us)

    async def cross_channel(
        self, since_us: int, until_us: int, window_us: int
    ) -> tuple[list[CrossRow], CrossTotals]:
        return await sqlcross.cross_channel(self._db, since_us, until_us, window_us)

    async def stats(self) -> dict[str, Any]:
        tables = (
            "stores",
            "profiles",
            "consents",
            "eid_keys",
            "token_keys",
            "offers",
            "inventory",
            "orders",
            "erasures",
            "sales",
            "campaign_exposures",
        )
        async with self._db.reading() as conn:
            counts = {}
            for table in tables:
                row = await one(conn, f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - names are ours
                counts[table] = int(row[0]) if row else 0
            changes = await one(conn, "SELECT COUNT(*) FROM changes")
            held = await one(conn, "SELECT COUNT(*) FROM store_shoppers WHERE member")
            last_seq = await one(conn, LAST, "changes")
            by_store = await conn.fetch(
                "SELECT store_id, COUNT(*) FROM events GROUP BY store_id ORDER BY store_id"
            )
        return {
            **counts,
            "changes": int(changes[0]) if changes else 0,
            "memberships": int(held[0]) if held else 0,
            "last_seq": int(last_seq[0]) if last_seq else 0,
            "events": sum(int(count) for _, count in by_store),
            "events_by_store": {str(store): int(count) for store, count in by_store},
        }
