"""Shopper writes in SQL (over ``sqldb.Database``): profiles, consents and EID keys, each written once for every
store that holds the shopper, and the memberships a store's pushes, fetches and pulls renew or let lapse.

The membership primitives (joins, lapses, the per-store keys) are ``profilestore.sqlscope``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from profilestore import sqlscope
from profilestore.const import MEMBER_REFRESH_S
from profilestore.jsonbody import dumps
from profilestore.served import consent_wire, served_profile
from profilestore.sqldb import Database, Lane, one
from profilestore.storage import (
    KEEP,
    ConsentOutcome,
    ConsentState,
    EidKeyState,
    EnrolOutcome,
    HomeStore,
    ProfileOutcome,
    ShopperWrite,
    Sighting,
    UnknownStoreError,
)
from storecontract.purposes import Purpose
from storecontract.sync import ChangeKind

# A membership is renewed by a store's pushes at most this often (const.MEMBER_REFRESH_S).
_REFRESH_US: Final = round(MEMBER_REFRESH_S * 1_000_000)


def _rank(state: ConsentState) -> tuple[int, bool, str]:
    # The same total order as the gateway (edge.identity.consent): latest first, then a withdrawal over a
    # grant at the same instant, then the larger source, so both sides keep the same winner.
    return (state.at_us, not state.granted, state.source)


async def enrol(
    db: Database, store_id: str, sightings: Sequence[Sighting], *, reason: str, window_us: int, now_us: int
) -> EnrolOutcome:
    """See ``Storage.enrol``. A sighting older than the window changes nothing."""
    latest: dict[str, int] = {}
    for sighting in sightings:  # an event dated ahead of the server's clock counts as now
        at_us = min(sighting.at_us, now_us)
        latest[sighting.shopper_id] = max(at_us, latest.get(sighting.shopper_id, at_us))
    if not latest:
        return EnrolOutcome(0, 0, 0)
    # Most pushes name shoppers the store holds already, renewed less than an hour ago: one read, no write.
    async with db.reading() as conn:
        wanted = sorted(latest)
        rows = await conn.fetch_any(
            "SELECT shopper_id, store_id, member, until_us FROM store_shoppers WHERE shopper_id {ANY}",
            wanted,
            "text",
        )
        erased = await conn.fetch_any(
            "SELECT shopper_id, erased_us FROM erasures WHERE shopper_id {ANY}", wanted, "text"
        )
    # The end of each membership of this store that holds the shopper now.
    holding = {
        str(shopper): int(until)
        for shopper, store, member, until in rows
        if store == store_id and bool(member)
    }
    erased_at = {str(shopper): int(erased_us) for shopper, erased_us in erased}
    renewals, joins, stale = [], [], []
    for shopper_id, at_us in sorted(latest.items()):
        if shopper_id in erased_at and at_us <= erased_at[shopper_id]:
            stale.append(shopper_id)  # may hold what it knew before the erasure: it gets the erasure
        elif at_us + window_us <= now_us:
            continue  # seen too long ago to count
        elif shopper_id not in holding:
            joins.append(shopper_id)
        elif at_us + window_us > holding[shopper_id] + _REFRESH_US:
            renewals.append(shopper_id)
    renewed = 0
    if renewals:
        async with db.writing() as conn:  # appends no change: no change-log lock
            for shopper_id in renewals:
                until_us = latest[shopper_id] + window_us
                if await sqlscope.renew(conn, store_id, shopper_id, until_us, reason):
                    renewed += 1
                else:
                    joins.append(shopper_id)  # it lapsed in between
    if not joins and not stale:
        return EnrolOutcome(0, renewed, 0)
    joined = erasures = 0
    async with db.writing(Lane.CHANGES) as conn:
        for shopper_id in stale:
            row = await one(conn, "SELECT erased_us FROM erasures WHERE shopper_id = $1", shopper_id)
            if row is not None:
                erasures += await sqlscope.tell_erasure(conn, store_id, shopper_id, int(row[0]))
        for shopper_id in sorted(joins):
            await sqlscope.scope_legacy(conn, shopper_id, now_us)
            until_us = latest[shopper_id] + window_us
            new, _ = await sqlscope.enrol(conn, store_id, shopper_id, until_us, reason, now_us)
            joined += new
            renewed += not new
    return EnrolOutcome(joined, renewed, erasures)


async def expire(db: Database, store_id: str, now_us: int, limit: int) -> int:
    """See ``Storage.expire``."""
    async with db.reading() as conn:  # nearly always nothing is due: one indexed probe, no write
        due = await conn.fetch(sqlscope.DUE, store_id, now_us, 1)
    if not due:
        return 0
    async with db.writing(Lane.CHANGES) as conn:
        return await sqlscope.lapse(conn, store_id, now_us, limit)


async def put_profile(
    db: Database, shopper_id: str, profile: dict[str, Any], now_us: int, *, home_store: HomeStore = KEEP
) -> ProfileOutcome:
    """The whole profile is kept; its member stores are sent only what a store may hold (``served``)."""
    async with db.writing(Lane.CHANGES) as conn:
        if (
            isinstance(home_store, str)
            and await one(conn, "SELECT 1 FROM stores WHERE store_id = $1", home_store) is None
        ):
            raise UnknownStoreError(f"no store {home_store!r} is registered")
        legacy = await sqlscope.scope_legacy(conn, shopper_id, now_us)
        existed = await one(conn, "SELECT 1 FROM profiles WHERE shopper_id = $1", shopper_id) is not None
        await conn.execute(
            "INSERT INTO profiles (shopper_id, profile, updated_us) VALUES ($1, $2, $3)"
            " ON CONFLICT (shopper_id) DO UPDATE SET profile = excluded.profile,"
            " updated_us = excluded.updated_us",
            shopper_id,
            dumps(profile),
            now_us,
        )
        stores = await sqlscope.members(conn, shopper_id)
        data = {"profile": served_profile(profile)}
        seq = await sqlscope.tell(conn, stores, shopper_id, ChangeKind.PROFILE, "upsert", data, now_us)
        if home_store is not KEEP:
            seq = await sqlscope.set_home(conn, shopper_id, home_store, now_us) or seq
        return ProfileOutcome(
            seq=seq or legacy,
            stores=len(await sqlscope.members(conn, shopper_id)),
            existed=existed,
            home_store=await sqlscope.home_of(conn, shopper_id),
        )


async def put_consent(db: Database, shopper_id: str, new: ConsentState, now_us: int) -> ConsentOutcome:
    purpose, granted, at_us, source = new.purpose, new.granted, new.at_us, new.source
    async with db.writing(Lane.CHANGES) as conn:
        row = await one(
            conn,
            "SELECT granted, at_us, source FROM consents WHERE shopper_id = $1 AND purpose = $2",
            shopper_id,
            purpose,
        )
        current = None if row is None else ConsentState(purpose, bool(row[0]), int(row[1]), str(row[2]))
        erased = await one(conn, "SELECT erased_us FROM erasures WHERE shopper_id = $1", shopper_id)
        # A consent given before the shopper was erased belongs to the erased shopper.
        if erased is not None and at_us <= int(erased[0]):
            return ConsentOutcome(applied=False, seq=None, current=current)
        if current is not None and _rank(current) >= _rank(new):
            return ConsentOutcome(applied=False, seq=None, current=current)
        legacy = await sqlscope.scope_legacy(conn, shopper_id, now_us)
        await conn.execute(
            "INSERT INTO consents (shopper_id, purpose, granted, at_us, source) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (shopper_id, purpose) DO UPDATE SET granted = excluded.granted,"
            " at_us = excluded.at_us, source = excluded.source",
            shopper_id,
            purpose,
            granted,
            at_us,
            source,
        )
        stores = await sqlscope.members(conn, shopper_id)
        seq = await sqlscope.tell(
            conn,
            stores,
            shopper_id,
            ChangeKind.CONSENT,
            "upsert",
            consent_wire(new),
            now_us,
            purpose=purpose,
        )
        if purpose == Purpose.PRESENCE_BLE.value:  # the key follows the consent (served.key_allowed)
            key_seq = (
                await sqlscope.tell_key(conn, stores, shopper_id, now_us)
                if granted
                else await sqlscope.tell(conn, stores, shopper_id, ChangeKind.EID_KEY, "delete", {}, now_us)
            )
            seq = key_seq or seq
        if purpose == Purpose.MEASUREMENT.value:  # campaign exposures follow the consent
            campaign_seq = (
                await sqlscope.tell_campaigns(conn, stores, shopper_id, now_us)
                if granted
                else await sqlscope.untell_campaigns(conn, stores, shopper_id, now_us)
            )
            seq = campaign_seq or seq
        return ConsentOutcome(applied=True, seq=seq or legacy, current=new, stores=len(stores))


async def put_eid_key(db: Database, shopper_id: str, key: EidKeyState, now_us: int) -> ShopperWrite:
    async with db.writing(Lane.CHANGES) as conn:
        legacy = await sqlscope.scope_legacy(conn, shopper_id, now_us)
        existed = await one(conn, "SELECT 1 FROM eid_keys WHERE shopper_id = $1", shopper_id) is not None
        await conn.execute(
            "INSERT INTO eid_keys (shopper_id, identity_key, rotation_exponent, clock_offset_s, updated_us)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (shopper_id) DO UPDATE SET"
            " identity_key = excluded.identity_key, rotation_exponent = excluded.rotation_exponent,"
            " clock_offset_s = excluded.clock_offset_s, updated_us = excluded.updated_us",
            shopper_id,
            key.identity_key,
            key.rotation_exponent,
            key.clock_offset_s,
            now_us,
        )
        stores = await sqlscope.members(conn, shopper_id)
        seq = await sqlscope.tell_key(conn, stores, shopper_id, now_us)
        return ShopperWrite(seq=seq or legacy, stores=len(stores), existed=existed)


async def delete_eid_key(db: Database, shopper_id: str, now_us: int) -> ShopperWrite:
    async with db.writing(Lane.CHANGES) as conn:
        legacy = await sqlscope.scope_legacy(conn, shopper_id, now_us)
        existed = await conn.execute("DELETE FROM eid_keys WHERE shopper_id = $1", shopper_id)
        stores = await sqlscope.members(conn, shopper_id)
        seq = await sqlscope.tell(conn, stores, shopper_id, ChangeKind.EID_KEY, "delete", {}, now_us)
        return ShopperWrite(seq=seq or legacy, stores=len(stores), existed=existed > 0)
