"""Which store holds which shopper, in SQL (issue 15): memberships, and the per-store share of the change log.

A store holds a shopper while it is their home store, or while it saw them (a pushed event naming them) or
fetched them (a cache miss) within the window. ``store_shoppers.member`` says whether the store's share of
the log carries the shopper now: set when the shopper's current state is appended for the store (a join),
cleared when deletes of all it was sent are appended (a lapse). Every shopper change (profile, consent, EID
key) is written once per member store, with the store's id and a compaction key of its own; see
docs/profile-store.md, "Which store holds which shopper".

Every function here runs inside a write transaction on ``Lane.CHANGES`` (the caller's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from profilestore.models import render_timestamp
from profilestore.served import consent_wire, eid_key_wire, served_key, served_profile
from profilestore.sqldb import Connection, append_change, one
from profilestore.storage import ConsentState, EidKeyState, ShopperState
from storecontract.purposes import Purpose
from storecontract.sync import ChangeKind, Op

# The kinds written per store, in the order a lapse deletes them (the key first, the consents last). An erasure
# is too, but it is not "what the store was sent": a lapse keeps it.
SHOPPER_KINDS: Final = (
    ChangeKind.EID_KEY,
    ChangeKind.CAMPAIGN_EXPOSURE,
    ChangeKind.PROFILE,
    ChangeKind.CONSENT,
)
_KINDS_SQL: Final = ", ".join(f"'{kind.value}'" for kind in SHOPPER_KINDS)
# Reasons recorded in store_shoppers.reason: why the store holds (or last held) the shopper.
HOME: Final = "home"
SEEN: Final = "seen"
FETCHED: Final = "fetched"

MEMBERS: Final = "SELECT store_id FROM store_shoppers WHERE shopper_id = $1 AND member ORDER BY store_id"
# A store's memberships that ran out (the partial index store_shoppers_due covers exactly these).
DUE: Final = (
    "SELECT shopper_id FROM store_shoppers WHERE store_id = $1 AND member AND NOT home AND until_us <= $2"
    " ORDER BY until_us, shopper_id LIMIT $3"
)
# Every store that may hold something of the shopper: sent anything (changes for a store, orders included),
# a member now or before, or a store whose pushes named them.
HOLDERS: Final = (
    "SELECT store_id FROM changes WHERE shopper_id = $1 AND store_id IS NOT NULL"
    " UNION SELECT store_id FROM store_shoppers WHERE shopper_id = $1"
    " UNION SELECT store_id FROM events WHERE shopper_id = $1"
)


def scoped_key(kind: ChangeKind, store_id: str, shopper_id: str, purpose: str | None = None) -> str:
    """The compaction key of a shopper change for one store. ``/`` is in neither a store id nor a shopper id,
    so the key names one (store, shopper) pair, and no key of schema 2 (``kind:shopper``) has one."""
    key = f"{kind.value}:{store_id}/{shopper_id}"
    return key if purpose is None else f"{key}:{purpose}"


def global_key(kind: ChangeKind, shopper_id: str) -> str:
    """The key of a shopper change for every store: schema 2's, and an erasure no store was known to need."""
    return f"{kind.value}:{shopper_id}"


def _delete_data(kind: str, upsert_data: str) -> dict[str, Any]:
    # A consent delete names its purpose (the key is per purpose); every other delete's data is {}.
    if kind == ChangeKind.CONSENT.value:
        return {"purpose": json.loads(upsert_data)["purpose"]}
    return {}


def campaign_key(store_id: str, exposure_id: str) -> str:
    """The compaction key of a campaign exposure for one store: exposure ids are unique, and an exposure's
    shopper never changes (a repost is a duplicate), so (store, exposure) names it."""
    return f"{ChangeKind.CAMPAIGN_EXPOSURE.value}:{store_id}/{exposure_id}"


async def measured(conn: Connection, shopper_id: str) -> bool:
    """Whether the shopper's latest ``measurement`` consent is a grant (campaign exposures follow it)."""
    row = await one(
        conn,
        "SELECT granted FROM consents WHERE shopper_id = $1 AND purpose = $2",
        shopper_id,
        Purpose.MEASUREMENT.value,
    )
    return row is not None and bool(row[0])


def campaign_wire(
    shopper_id: str, campaign_id: str, at_us: int, skus: Sequence[str], category: str | None
) -> dict[str, Any]:
    """A campaign exposure as the wire carries it (a ``campaign_exposure`` change's data)."""
    return {
        "shopper_id": shopper_id,
        "campaign_id": campaign_id,
        "at": render_timestamp(at_us),
        "skus": list(skus),
        "category": category,
    }


async def tell_campaigns(
    conn: Connection, stores: Sequence[str], shopper_id: str, now_us: int, *, exposure_id: str | None = None
) -> int | None:
    """The shopper's campaign exposures (or only ``exposure_id``) to each of ``stores``, if their
    ``measurement`` consent is a grant; the last seq, or None."""
    if not stores or not await measured(conn, shopper_id):
        return None
    rows = await conn.fetch(
        "SELECT exposure_id, campaign_id, at_us, skus, category FROM campaign_exposures"
        " WHERE shopper_id = $1 AND ($2 = '' OR exposure_id = $2) ORDER BY at_us, exposure_id",
        shopper_id,
        exposure_id or "",
    )
    seq = None
    for exposure, campaign, at_us, skus, category in rows:
        data = campaign_wire(
            shopper_id,
            str(campaign),
            int(at_us),
            json.loads(skus),
            None if category is None else str(category),
        )
        for store_id in stores:
            seq = await append_change(
                conn,
                ChangeKind.CAMPAIGN_EXPOSURE,
                str(exposure),
                "upsert",
                data,
                now_us,
                key=campaign_key(store_id, str(exposure)),
                shopper_id=shopper_id,
                store_id=store_id,
            )
    return seq


async def untell_campaigns(
    conn: Connection, stores: Sequence[str], shopper_id: str, now_us: int
) -> int | None:
    """Deletes of every campaign exposure of the shopper each of ``stores`` holds (a ``measurement``
    withdrawal); the last seq, or None."""
    seq = None
    for store_id in stores:
        rows = await conn.fetch(
            "SELECT kind, compact_key, data, id FROM changes WHERE store_id = $1 AND shopper_id = $2"
            " AND op = 'upsert' AND kind = $3 ORDER BY seq",
            store_id,
            shopper_id,
            ChangeKind.CAMPAIGN_EXPOSURE.value,
        )
        seq = await _deletes(conn, rows, shopper_id, store_id, now_us) or seq
    return seq


async def read_state(conn: Connection, shopper_id: str) -> ShopperState | None:
    """The shopper's whole current state (as stored: the full profile), or None if there is none."""
    profile = await one(conn, "SELECT profile FROM profiles WHERE shopper_id = $1", shopper_id)
    consents = await conn.fetch(
        "SELECT purpose, granted, at_us, source FROM consents WHERE shopper_id = $1 ORDER BY purpose",
        shopper_id,
    )
    key = await one(
        conn,
        "SELECT identity_key, rotation_exponent, clock_offset_s FROM eid_keys WHERE shopper_id = $1",
        shopper_id,
    )
    if profile is None and not consents and key is None:
        return None
    return ShopperState(
        shopper_id=shopper_id,
        profile=None if profile is None else json.loads(profile[0]),
        consents={
            str(purpose): ConsentState(str(purpose), bool(granted), int(at_us), str(source))
            for purpose, granted, at_us, source in consents
        },
        eid_key=None if key is None else EidKeyState(bytes(key[0]), int(key[1]), int(key[2])),
    )


async def members(conn: Connection, shopper_id: str) -> list[str]:
    return [str(store_id) for (store_id,) in await conn.fetch(MEMBERS, shopper_id)]


async def tell(
    conn: Connection,
    stores: Sequence[str],
    shopper_id: str,
    kind: ChangeKind,
    op: Op,
    data: dict[str, Any],
    now_us: int,
    *,
    purpose: str | None = None,
) -> int | None:
    """Append one change about the shopper for each of ``stores``; the last seq (None: no store)."""
    seq = None
    for store_id in stores:
        seq = await append_change(
            conn,
            kind,
            shopper_id,
            op,
            data,
            now_us,
            key=scoped_key(kind, store_id, shopper_id, purpose),
            shopper_id=shopper_id,
            store_id=store_id,
        )
    return seq


async def key_to_serve(conn: Connection, shopper_id: str) -> EidKeyState | None:
    """The shopper's EID key when a store may hold it (their ``presence_ble`` consent is a grant), else None."""
    presence = await one(
        conn,
        "SELECT granted FROM consents WHERE shopper_id = $1 AND purpose = $2",
        shopper_id,
        Purpose.PRESENCE_BLE.value,
    )
    if presence is None or not bool(presence[0]):
        return None
    row = await one(
        conn,
        "SELECT identity_key, rotation_exponent, clock_offset_s FROM eid_keys WHERE shopper_id = $1",
        shopper_id,
    )
    return None if row is None else EidKeyState(bytes(row[0]), int(row[1]), int(row[2]))


async def tell_key(conn: Connection, stores: Sequence[str], shopper_id: str, now_us: int) -> int | None:
    """The key to each store, when a store may hold it (a new key, a ``presence_ble`` grant). The last seq."""
    key = await key_to_serve(conn, shopper_id)
    if key is None:
        return None
    return await tell(conn, stores, shopper_id, ChangeKind.EID_KEY, "upsert", eid_key_wire(key), now_us)


async def join(conn: Connection, store_id: str, shopper_id: str, now_us: int) -> int | None:
    """Append the shopper's current state for ``store_id`` (which did not hold them): its next pull delivers
    it whatever its cursor. What a store is served only (``profilestore.served``). The last seq, or None."""
    state = await read_state(conn, shopper_id)
    if state is None:
        return None
    stores = (store_id,)
    seq = None
    if state.profile is not None:
        data = {"profile": served_profile(state.profile)}
        seq = await tell(conn, stores, shopper_id, ChangeKind.PROFILE, "upsert", data, now_us)
    for purpose, consent in state.consents.items():
        wire = consent_wire(consent)
        seq = await tell(
            conn, stores, shopper_id, ChangeKind.CONSENT, "upsert", wire, now_us, purpose=purpose
        )
    key = served_key(state)
    if key is not None:
        seq = await tell(conn, stores, shopper_id, ChangeKind.EID_KEY, "upsert", eid_key_wire(key), now_us)
    return await tell_campaigns(conn, stores, shopper_id, now_us) or seq


async def retract(conn: Connection, store_id: str, shopper_id: str, now_us: int) -> int | None:
    """Append, for ``store_id``, a delete of everything it was sent of the shopper and holds (the EID key
    first): "forget this data", never a consent withdrawal. The last seq, or None if there was nothing."""
    rows = await conn.fetch(
        f"SELECT kind, compact_key, data, id FROM changes WHERE store_id = $1 AND shopper_id = $2"  # noqa: S608
        f" AND op = 'upsert' AND kind IN ({_KINDS_SQL}) ORDER BY seq",
        store_id,
        shopper_id,
    )
    return await _deletes(conn, rows, shopper_id, store_id, now_us)


async def scope_legacy(conn: Connection, shopper_id: str, now_us: int) -> int | None:
    """Schema 2 wrote shopper changes for every store. The first write about such a shopper since replaces
    them by deletes for every store, so the stores that do not hold the shopper forget them; the stores that
    do get what they hold written for them after it. The last seq, or None if there was nothing to replace."""
    rows = await conn.fetch(
        f"SELECT kind, compact_key, data, id FROM changes WHERE shopper_id = $1 AND store_id IS NULL"  # noqa: S608
        f" AND op = 'upsert' AND kind IN ({_KINDS_SQL}) ORDER BY seq",
        shopper_id,
    )
    return await _deletes(conn, rows, shopper_id, None, now_us)


async def _deletes(
    conn: Connection, rows: list[Sequence[Any]], shopper_id: str, store_id: str | None, now_us: int
) -> int | None:
    order = {kind.value: rank for rank, kind in enumerate(SHOPPER_KINDS)}
    seq = None
    # The change's own id: the shopper's for most kinds, the exposure's for a campaign exposure.
    for kind, key, data, change_id in sorted(rows, key=lambda row: order[str(row[0])]):
        seq = await append_change(
            conn,
            ChangeKind(str(kind)),
            str(change_id),
            "delete",
            _delete_data(str(kind), str(data)),
            now_us,
            key=str(key),
            shopper_id=shopper_id,
            store_id=store_id,
        )
    return seq


async def _membership(conn: Connection, store_id: str, shopper_id: str) -> tuple[bool, bool, int] | None:
    """(member, home, until_us) of the pair, or None without a row."""
    row = await one(
        conn,
        "SELECT member, home, until_us FROM store_shoppers WHERE store_id = $1 AND shopper_id = $2",
        store_id,
        shopper_id,
    )
    return None if row is None else (bool(row[0]), bool(row[1]), int(row[2]))


async def _set_member(
    conn: Connection, store_id: str, shopper_id: str, *, reason: str, until_us: int, home: bool
) -> None:
    await conn.execute(
        "INSERT INTO store_shoppers (store_id, shopper_id, reason, until_us, home, member)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (store_id, shopper_id) DO UPDATE SET"
        " reason = excluded.reason, until_us = excluded.until_us, home = excluded.home, member = excluded.member",
        store_id,
        shopper_id,
        reason,
        until_us,
        home,
        True,
    )


async def enrol(
    conn: Connection, store_id: str, shopper_id: str, until_us: int, reason: str, now_us: int
) -> tuple[bool, int | None]:
    """Make the store hold the shopper until at least ``until_us``: (joined, the last seq appended)."""
    row = await _membership(conn, store_id, shopper_id)
    member, home, until = row if row is not None else (False, False, 0)
    await _set_member(
        conn,
        store_id,
        shopper_id,
        reason=HOME if home else reason,
        until_us=max(until, until_us),
        home=home,
    )
    if member:
        return False, None
    return True, await join(conn, store_id, shopper_id, now_us)


async def lapse(conn: Connection, store_id: str, now_us: int, limit: int) -> int:
    """The store's memberships that ran out: deletes of what it holds of each shopper; how many."""
    due = [str(shopper_id) for (shopper_id,) in await conn.fetch(DUE, store_id, now_us, limit)]
    lapsed = 0
    for shopper_id in due:
        if await _release(conn, store_id, shopper_id, now_us):
            await retract(conn, store_id, shopper_id, now_us)
            lapsed += 1
    return lapsed


async def home_of(conn: Connection, shopper_id: str) -> str | None:
    row = await one(conn, "SELECT store_id FROM store_shoppers WHERE shopper_id = $1 AND home", shopper_id)
    return None if row is None else str(row[0])


async def set_home(conn: Connection, shopper_id: str, store_id: str | None, now_us: int) -> int | None:
    """Make ``store_id`` the shopper's home store (None: none). The store it replaces keeps the shopper only
    while its seen/fetched window lasts; the new one joins. The last seq appended, or None."""
    current = await home_of(conn, shopper_id)
    if current == store_id:
        return None
    seq = None
    if current is not None:
        await conn.execute(
            "UPDATE store_shoppers SET home = $3, reason = $4 WHERE store_id = $1 AND shopper_id = $2",
            current,
            shopper_id,
            False,
            SEEN,
        )
        seq = await lapse_one(conn, current, shopper_id, now_us)  # unless seen or fetched lately
    if store_id is not None:
        membership = await _membership(conn, store_id, shopper_id)
        member, until = (membership[0], membership[2]) if membership is not None else (False, 0)
        await _set_member(conn, store_id, shopper_id, reason=HOME, until_us=until, home=True)
        if not member:
            seq = await join(conn, store_id, shopper_id, now_us) or seq
    return seq


async def _release(conn: Connection, store_id: str, shopper_id: str, now_us: int) -> bool:
    """Whether the store's membership ran out (not home, window over): then it is marked so.

    The condition is the update's own: a renewal (``renew``, which takes no change-log lock) that commits
    first makes it match nothing, and one that comes after finds ``member`` false and joins again."""
    released = await conn.execute(
        "UPDATE store_shoppers SET member = $3 WHERE store_id = $1 AND shopper_id = $2"
        " AND member AND NOT home AND until_us <= $4",
        store_id,
        shopper_id,
        False,
        now_us,
    )
    return released > 0


async def lapse_one(conn: Connection, store_id: str, shopper_id: str, now_us: int) -> int | None:
    """If the store's membership ran out, it no longer holds the shopper: deletes of what it was sent
    (``retract``). The last seq, or None."""
    if not await _release(conn, store_id, shopper_id, now_us):
        return None
    return await retract(conn, store_id, shopper_id, now_us)


async def renew(conn: Connection, store_id: str, shopper_id: str, until_us: int, reason: str) -> bool:
    """Make a membership last until at least ``until_us``; False if the store does not hold the shopper
    (any more: then it must join, under the change-log lock). Appends nothing, so it needs no lock."""
    renewed = await conn.execute(
        "UPDATE store_shoppers SET until_us = CASE WHEN until_us < $3 THEN $3 ELSE until_us END,"
        " reason = CASE WHEN home THEN $4 ELSE $5 END WHERE store_id = $1 AND shopper_id = $2 AND member",
        store_id,
        shopper_id,
        until_us,
        HOME,
        reason,
    )
    return renewed > 0


async def holders(conn: Connection, shopper_id: str) -> list[str]:
    """Every store that may hold something of the shopper (see ``HOLDERS``), sorted."""
    return sorted({str(store_id) for (store_id,) in await conn.fetch(HOLDERS, shopper_id)})


async def append_erasure(conn: Connection, shopper_id: str, store_id: str | None, erased_us: int) -> int:
    """The erasure change for ``store_id`` (None: every store); its ``at`` is when the shopper was erased."""
    key = (
        global_key(ChangeKind.ERASURE, shopper_id)
        if store_id is None
        else scoped_key(ChangeKind.ERASURE, store_id, shopper_id)
    )
    return await append_change(
        conn,
        ChangeKind.ERASURE,
        shopper_id,
        "upsert",
        {},
        erased_us,
        key=key,
        shopper_id=shopper_id,
        store_id=store_id,
    )


async def erasures(conn: Connection, shopper_id: str, stores: Sequence[str], erased_us: int) -> int:
    """The erasure for each store that may hold the shopper (``holders``), or for every store when none is
    known to: a store's seed file (docs/config.md) may hold a shopper the cloud never placed anywhere. The
    last seq."""
    seq = 0
    targets: list[str | None] = [*stores] or [None]
    for store_id in targets:
        seq = await append_erasure(conn, shopper_id, store_id, erased_us)
    return seq


async def tell_erasure(conn: Connection, store_id: str, shopper_id: str, erased_us: int) -> bool:
    """A store named an erased shopper from before the erasure (a backlog pushed late): it may hold what it
    knew of them, so it gets the erasure, unless its share of the log has it already. True if appended."""
    have = await conn.fetch(
        "SELECT 1 FROM changes WHERE compact_key = $1 OR compact_key = $2",
        scoped_key(ChangeKind.ERASURE, store_id, shopper_id),
        global_key(ChangeKind.ERASURE, shopper_id),
    )
    if have:
        return False
    await append_erasure(conn, shopper_id, store_id, erased_us)
    return True
