"""Each store holds only its own shoppers (issue 15, section 1): home shoppers, shoppers it saw or fetched within
the window; the EID key only with ``presence_ble``; only the allow-listed profile fields; erasures reach every
store that may hold the shopper; a store token reads and pushes only its own store's data.

Over real HTTP, on SQLite and on PostgreSQL, with the cloud's clock moved by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from edge.clock import ManualClock, iso_utc
from storecontract.profiles import PROFILE_FIELDS
from tests.profilestore.spec import check
from tests.support.profilestore import Home, ProfileStoreKit, running_profile_store

DAY_S = 86_400.0
EID_KEY = bytes(range(16))
EID_WIRE = {"identity_key": "AAECAwQFBgcICQoLDA0ODw==", "rotation_exponent": 10, "clock_offset_s": 0}
# What the cloud keeps of a shopper, and what a store may be served of it.
PROFILE = {
    "name": "Ana Pereira",
    "email": "ana@example.com",
    "segment": "regular",
    "staff_display_name": "Ana",
    "affinity": {"apparel": 0.9},
    "visits": 12,
    "language": "pt",
}
SERVED = {"staff_display_name": "Ana", "affinity": {"apparel": 0.9}, "visits": 12, "language": "pt"}


class Chain(NamedTuple):
    kit: ProfileStoreKit
    clock: ManualClock  # the cloud's, moved by the tests only
    one: str  # store-001's token
    two: str  # store-002's token


@pytest.fixture
async def chain(db_url: str, tmp_path: Path) -> AsyncIterator[Chain]:
    """A running store on either database, its clock at 2027-01-15T08:00:00Z, with store-001 and store-002."""
    clock = ManualClock(wall=1_800_000_000.0)
    async with running_profile_store(tmp_path, db_url=db_url, clock=clock) as kit:
        yield Chain(kit, clock, await kit.add_store("store-001"), await kit.add_store("store-002"))


def seen(shopper: str, clock: ManualClock, kind: str = "exposure") -> dict[str, Any]:
    """An event a store pushes that names ``shopper``, dated now."""
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "class": "conversion",
        "at": iso_utc(clock.wall()),
        "shopper_id": shopper,
        "data": {},
    }


async def push(kit: ProfileStoreKit, store: str, token: str, *events: dict[str, Any]) -> None:
    status, answer = await kit.store_call(
        "POST", f"/v1/stores/{store}/events", token, {"events": list(events)}
    )
    assert (status, answer["accepted"] + answer["duplicates"]) == (200, len(events)), answer


async def pulled(kit: ProfileStoreKit, store: str, token: str, since: str = "") -> tuple[list[Any], str]:
    """What ``store`` pulls after ``since`` as (kind, id, op, data) tuples, and its cursor; each page checked
    against the contract."""
    changes, cursor = await kit.pull_all(store, token, since, limit=3)
    for change in changes:
        check("Change", change)
    return [(c["kind"], c["id"], c["op"], c["data"]) for c in changes], cursor


async def shopper(kit: ProfileStoreKit, shopper_id: str, home: str | None, *, eid: bool = True) -> None:
    """A shopper of ``home`` with presence_ble and personalization granted from the app and an EID key."""
    await kit.put_shopper(shopper_id, PROFILE, home_store=home)
    for purpose in ("presence_ble", "personalization"):
        await kit.put_consent(shopper_id, purpose, True, source="app")
    if eid:
        await kit.put_eid_key(shopper_id, EID_KEY, 10)


def about(changes: list[Any], shopper_id: str) -> list[tuple[str, str]]:
    return [(kind, op) for kind, key, op, _ in changes if key == shopper_id]


STATE = [("profile", "upsert"), ("consent", "upsert"), ("consent", "upsert"), ("eid_key", "upsert")]
FORGET = [("eid_key", "delete"), ("profile", "delete"), ("consent", "delete"), ("consent", "delete")]


async def test_a_store_never_receives_another_stores_shopper(chain: Chain) -> None:
    kit, _, one, two = chain
    await shopper(kit, "p-ana", "store-001")
    await shopper(kit, "p-ben", "store-002")
    await kit.put_offer({"id": "latte", "title": "Latte", "category": "coffee", "value": 4.5})

    mine, cursor = await pulled(kit, "store-001", one)
    assert about(mine, "p-ana") == STATE
    assert about(mine, "p-ben") == []
    assert ("offer", "latte", "upsert") in [change[:3] for change in mine]  # global changes reach everyone
    theirs, _ = await pulled(kit, "store-002", two)
    assert about(theirs, "p-ben") == STATE
    assert about(theirs, "p-ana") == []

    # Everything about p-ben from now on stays out of store-001's pages; its cursor passes it.
    await kit.put_shopper("p-ben", {**PROFILE, "visits": 13}, home_store=Home.KEEP)
    await kit.put_consent("p-ben", "measurement", True, source="app")
    await kit.delete_eid_key("p-ben")
    after, later = await pulled(kit, "store-001", one, cursor)
    assert after == []
    assert later != cursor
    assert about((await pulled(kit, "store-002", two))[0], "p-ben") == [
        ("consent", "upsert"),
        ("consent", "upsert"),
        ("profile", "upsert"),  # compacted: the newer profile replaced the first
        ("consent", "upsert"),
        ("eid_key", "delete"),
    ]
    stats = check("Stats", await kit.stats())
    assert (stats["memberships"], stats["profiles"]) == (2, 2)


async def test_name_and_email_are_never_served(chain: Chain) -> None:
    kit, clock, one, two = chain
    await shopper(kit, "p-ana", "store-001")
    await push(kit, "store-002", two, seen("p-ana", clock))  # a join: the current state, appended
    await kit.put_shopper("p-ana", {**PROFILE, "interests": ["linen"]}, home_store=Home.KEEP)  # an update

    profiles = [
        data["profile"]
        for store, token in (("store-001", one), ("store-002", two))
        for kind, _, _, data in (await pulled(kit, store, token))[0]
        if kind == "profile"
    ]
    status, fetched = await kit.store_call("GET", "/v1/stores/store-002/profiles/p-ana", two)
    assert status == 200
    profiles.append(check("ShopperProfile", fetched)["profile"])
    assert profiles == [{**SERVED, "interests": ["linen"]}] * 3
    for profile in profiles:
        assert set(profile) <= PROFILE_FIELDS
        assert not {"name", "email", "segment"} & set(profile)


def test_the_cloud_serves_the_fields_the_gateway_keeps() -> None:
    from edge.identity.consent import PROFILE_FIELDS as GATEWAY_FIELDS  # noqa: PLC0415 - the other side

    assert PROFILE_FIELDS == GATEWAY_FIELDS
    assert not {"name", "email", "display_name"} & PROFILE_FIELDS


async def test_a_shopper_seen_in_another_store_arrives_with_their_current_state(chain: Chain) -> None:
    kit, clock, one, two = chain
    await shopper(kit, "p-ana", "store-001")
    _, cursor = await pulled(kit, "store-002", two)  # store-002 is up to date: nothing of p-ana

    # p-ana checks in at store-002: an event names her. Its next pull delivers her state, though its cursor
    # is past every change made about her so far.
    await push(kit, "store-002", two, seen("p-ana", clock))
    joined, cursor = await pulled(kit, "store-002", two, cursor)
    assert about(joined, "p-ana") == STATE
    assert joined[0][3] == {"profile": SERVED}
    assert joined[-1][3] == EID_WIRE
    consents = {data["purpose"]: data["granted"] for kind, _, _, data in joined if kind == "consent"}
    assert consents == {"presence_ble": True, "personalization": True}
    # From then on, her changes reach both stores; another event does not send her state again.
    await push(kit, "store-002", two, seen("p-ana", clock))
    await kit.put_consent("p-ana", "personalization", False, source="app")
    for store, token in (("store-001", one), ("store-002", two)):
        changes, _ = await pulled(kit, store, token, cursor if store == "store-002" else "")
        assert ("consent", "p-ana", "upsert", {**changes[-1][3], "granted": False}) == changes[-1]
    assert about((await pulled(kit, "store-002", two, cursor))[0], "p-ana") == [("consent", "upsert")]
    assert (await kit.stats())["memberships"] == 2


async def test_a_membership_lapses_into_deletes_that_forget_without_withdrawing(chain: Chain) -> None:
    kit, clock, one, two = chain
    await shopper(kit, "p-ana", "store-001")
    await push(kit, "store-002", two, seen("p-ana", clock))
    _, cursor = await pulled(kit, "store-002", two)

    clock.advance(20 * DAY_S)
    await push(kit, "store-002", two, seen("p-ana", clock))  # seen again: 30 days from now
    clock.advance(29 * DAY_S)
    assert (await pulled(kit, "store-002", two, cursor))[0] == []  # still hers
    clock.advance(1 * DAY_S + 1)
    forgotten, cursor = await pulled(kit, "store-002", two, cursor)
    assert about(forgotten, "p-ana") == FORGET
    # "Forget this data": deletes only, a consent's naming its purpose; never a withdrawal (granted: false).
    assert [data for _, _, _, data in forgotten] == [
        {},
        {},
        {"purpose": "personalization"},
        {"purpose": "presence_ble"},
    ]
    assert (await pulled(kit, "store-002", two, cursor))[0] == []  # once
    # A pull from the beginning rebuilds the store's state: p-ana is not in it (only her deletes).
    assert {op for kind, key, op, _ in (await pulled(kit, "store-002", two))[0] if key == "p-ana"} == {
        "delete"
    }
    # Her home store keeps her; her changes no longer reach store-002.
    assert about((await pulled(kit, "store-001", one))[0], "p-ana") == STATE
    await kit.put_shopper("p-ana", PROFILE, home_store=Home.KEEP)
    assert (await pulled(kit, "store-002", two, cursor))[0] == []
    assert (await kit.stats())["memberships"] == 1
    # Back a month later: she is store-002's again, with her current state.
    await push(kit, "store-002", two, seen("p-ana", clock))
    assert about((await pulled(kit, "store-002", two, cursor))[0], "p-ana") == STATE


async def test_a_shorter_window_is_a_setting(tmp_path: Path) -> None:
    clock = ManualClock(wall=1_800_000_000.0)
    async with running_profile_store(tmp_path, clock=clock, member_days=2) as kit:
        await kit.add_store("store-001")
        two = await kit.add_store("store-002")
        await shopper(kit, "p-ana", "store-001", eid=False)
        await push(kit, "store-002", two, seen("p-ana", clock))
        clock.advance(2 * DAY_S - 1)
        assert about((await pulled(kit, "store-002", two))[0], "p-ana")[-1] == ("consent", "upsert")
        clock.advance(1)
        assert about((await pulled(kit, "store-002", two))[0], "p-ana")[-1] == ("consent", "delete")


async def test_an_eid_key_only_while_presence_ble_is_granted(chain: Chain) -> None:
    kit, _, one, _ = chain
    await kit.put_shopper("p-ana", PROFILE, home_store="store-001")
    written = check("ShopperWriteResult", await kit.put_eid_key("p-ana", EID_KEY, 10))
    assert written == {"seq": None, "stores": 1}  # kept in the cloud, sent to no store
    changes, cursor = await pulled(kit, "store-001", one)
    assert about(changes, "p-ana") == [("profile", "upsert")]
    status, fetched = await kit.store_call("GET", "/v1/stores/store-001/profiles/p-ana", one)
    assert (status, fetched["eid_key"]) == (200, None)

    await kit.put_consent("p-ana", "presence_ble", True, source="app")
    granted, cursor = await pulled(kit, "store-001", one, cursor)
    assert about(granted, "p-ana") == [("consent", "upsert"), ("eid_key", "upsert")]
    assert granted[-1][3] == EID_WIRE
    _, fetched = await kit.store_call("GET", "/v1/stores/store-001/profiles/p-ana", one)
    assert fetched["eid_key"] == EID_WIRE

    await kit.put_consent("p-ana", "presence_ble", False, source="app")
    withdrawn, cursor = await pulled(kit, "store-001", one, cursor)
    assert about(withdrawn, "p-ana") == [("consent", "upsert"), ("eid_key", "delete")]
    _, fetched = await kit.store_call("GET", "/v1/stores/store-001/profiles/p-ana", one)
    assert fetched["eid_key"] is None
    # A new key while the consent is withdrawn reaches no store.
    await kit.put_eid_key("p-ana", bytes(16), 10)
    assert (await pulled(kit, "store-001", one, cursor))[0] == []


async def test_an_erasure_reaches_every_store_that_may_hold_the_shopper(chain: Chain) -> None:
    kit, clock, *_ = chain
    names = ("home", "seen", "fetched", "lapsed", "late", "never")
    tokens = {name: await kit.add_store(name) for name in names}
    await shopper(kit, "p-ana", "home")
    await push(kit, "lapsed", tokens["lapsed"], seen("p-ana", clock))
    backlog = seen("p-ana", clock)  # queued at "late" while its internet is down
    clock.advance(31 * DAY_S)
    assert about((await pulled(kit, "lapsed", tokens["lapsed"]))[0], "p-ana") == FORGET
    await push(kit, "seen", tokens["seen"], seen("p-ana", clock))
    assert (await kit.store_call("GET", "/v1/stores/fetched/profiles/p-ana", tokens["fetched"]))[0] == 200
    cursors = {name: (await pulled(kit, name, tokens[name]))[1] for name in names}

    erased = check("ErasureResult", await kit.erase("p-ana"))

    assert erased["stores"] == 4
    for name in ("home", "seen", "fetched", "lapsed"):
        changes, cursors[name] = await pulled(kit, name, tokens[name], cursors[name])
        assert changes == [("erasure", "p-ana", "upsert", {})], name
    assert (await pulled(kit, "never", tokens["never"], cursors["never"]))[0] == []
    # The log keeps nothing about her but the erasures.
    for name in names:
        assert {kind for kind, key, _, _ in (await pulled(kit, name, tokens[name]))[0] if key == "p-ana"} <= {
            "erasure"
        }
    # A backlog dated before the erasure arrives from "late": it may hold her, so it gets the erasure too.
    await push(kit, "late", tokens["late"], backlog)
    assert (await pulled(kit, "late", tokens["late"], cursors["late"]))[0] == [
        ("erasure", "p-ana", "upsert", {})
    ]
    assert all(event["shopper_id"] is None for event in await kit.events("late"))
    # No store known to hold a shopper: the erasure is for every store (a seed file may hold them).
    unknown = check("ErasureResult", await kit.erase("p-seeded"))
    assert unknown["stores"] == 0
    assert (await pulled(kit, "never", tokens["never"], cursors["never"]))[0] == [
        ("erasure", "p-seeded", "upsert", {})
    ]


async def test_a_store_token_reads_and_pushes_only_its_own_store(chain: Chain) -> None:
    kit, clock, one, _ = chain
    await shopper(kit, "p-ben", "store-002")
    for method, path, body in (
        ("GET", "/v1/stores/store-002/changes", None),
        ("POST", "/v1/stores/store-002/events", {"events": [seen("p-ben", clock)]}),
        ("GET", "/v1/stores/store-002/profiles/p-ben", None),
    ):
        status, answer = await kit.store_call(method, path, one, body)
        assert (status, answer["error"]) == (403, "forbidden"), path
    status, answer = await kit.store_call("GET", "/admin/v1/events?store_id=store-002", one)
    assert status == 401
    assert await kit.events("store-002") == []
    assert about((await pulled(kit, "store-001", one))[0], "p-ben") == []

    # p-ben walks into store-001: its cache-miss fetch (its own path) is answered, and he becomes its shopper.
    status, fetched = await kit.store_call("GET", "/v1/stores/store-001/profiles/p-ben", one)
    assert (status, fetched["profile"]) == (200, SERVED)
    assert about((await pulled(kit, "store-001", one))[0], "p-ben") == STATE
    # An unknown or erased shopper is a 404 and makes no one a member.
    status, _ = await kit.store_call("GET", "/v1/stores/store-001/profiles/p-nobody", one)
    assert status == 404
    assert (await kit.stats())["memberships"] == 2


async def test_the_home_store_moves_and_goes(chain: Chain) -> None:
    kit, clock, one, two = chain
    first = check("ShopperResult", await kit.put_shopper("p-ana", PROFILE, home_store="store-001"))
    assert (first["stores"], first["home_store"]) == (1, "store-001")
    cursors = {"store-001": (await pulled(kit, "store-001", one))[1], "store-002": ""}

    unknown = await kit.admin(
        "PUT", "/admin/v1/shoppers/p-ana", {"profile": PROFILE, "home_store": "store-404"}, expect=404
    )
    assert unknown["error"] == "not_found"
    kept = check("ShopperResult", await kit.put_shopper("p-ana", PROFILE, home_store=Home.KEEP))
    assert kept["home_store"] == "store-001"

    moved = check("ShopperResult", await kit.put_shopper("p-ana", PROFILE, home_store="store-002"))
    assert (moved["stores"], moved["home_store"]) == (1, "store-002")
    changes, cursors["store-001"] = await pulled(kit, "store-001", one, cursors["store-001"])
    assert about(changes, "p-ana") == [("profile", "delete")]  # the updates in between: compacted away
    changes, cursors["store-002"] = await pulled(kit, "store-002", two, cursors["store-002"])
    assert about(changes, "p-ana") == [("profile", "upsert")]

    # Seen at store-002 recently: losing its home status, it keeps her for the window.
    await push(kit, "store-002", two, seen("p-ana", clock))
    gone = check("ShopperResult", await kit.put_shopper("p-ana", PROFILE, home_store=None))
    assert (gone["stores"], gone["home_store"]) == (1, None)
    assert about((await pulled(kit, "store-002", two, cursors["store-002"]))[0], "p-ana") == [
        ("profile", "upsert")
    ]
    clock.advance(31 * DAY_S)
    assert about((await pulled(kit, "store-002", two, cursors["store-002"]))[0], "p-ana") == [
        ("profile", "delete")
    ]
    nobody = check("ShopperResult", await kit.put_shopper("p-ana", PROFILE, home_store=Home.KEEP))
    assert nobody == {"seq": None, "stores": 0, "home_store": None}
