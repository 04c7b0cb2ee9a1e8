"""Online and offline together in the reference cloud (issue 16): online sales and campaign exposures stored once
by id, campaign exposures sent down only to the stores holding the shopper and only while their `measurement`
consent is granted, and the cross-channel join (store -> online, online -> store, last and any touch).

Storage tests run on SQLite and on PostgreSQL (``db_url``); the HTTP tests on the real server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from profilestore.const import PAGE_BUDGET_BYTES
from profilestore.sqlcross import EXPOSURE_WITHOUT_DECISION, OFFER_NOT_IN_CATALOG, SALE_WITHOUT_ITEMS
from profilestore.storage import (
    CampaignExposureRecord,
    CrossRow,
    EventRecord,
    SaleLine,
    SaleRecord,
    Storage,
    open_storage,
)
from tests.profilestore.spec import check
from tests.support.launch import child_env, cloud_command
from tests.support.profilestore import running_profile_store

US = 1_000_000
DAY = 86_400 * US
T0 = 1_800_000_000 * US
WINDOW = 14 * DAY
SHOES = {
    "id": "run-shoes",
    "title": "Running shoes",
    "template": "hero",
    "category": "sports",
    "skus": ["SHOE-1", "SHOE-2"],
    "value": 10.0,
}


def event(
    kind: str, at_us: int, shopper: str | None, data: dict[str, Any], event_class: str = "telemetry"
) -> EventRecord:
    return EventRecord(str(uuid.uuid4()), kind, event_class, at_us, shopper, data)


def decision(decision_id: str, offer_id: str | None, at_us: int, shopper: str | None) -> EventRecord:
    data = {
        "decision_id": decision_id,
        "display_id": "d1",
        "zone": "entrance",
        "offer_id": offer_id,
        "template": "hero",
        "model_version": "m1",
        "propensity": 0.9,
        "explored": False,
        "holdout": offer_id is None,
        "personalized": True,
    }
    return event("decision", at_us, shopper, data)


def exposure(decision_id: str, at_us: int, shopper: str | None) -> EventRecord:
    data = {"decision_id": decision_id, "display_id": "d1", "version": 1, "shown_at": "x", "acked_at": "x"}
    return event("exposure", at_us, shopper, data)


def conversion(at_us: int, shopper: str | None, items: list[dict[str, Any]], total: float) -> EventRecord:
    data = {"txn_id": uuid.uuid4().hex[:12], "lane": "1", "items": items, "total": total, "currency": "EUR"}
    return event("conversion", at_us, shopper, data, "conversion")


def online_sale(sale_id: str, shopper: str | None, at_us: int, *lines: SaleLine) -> SaleRecord:
    total = sum(line.qty * line.price for line in lines)
    return SaleRecord(sale_id, "online", None, shopper, at_us, total, "EUR", lines)


async def pushed(storage: Storage, store_id: str, *events: EventRecord) -> None:
    """As the store API does: stored once by id, and (fresh ones only) taken into the join."""
    await storage.push_events(store_id, events, T0)


def table(rows: list[CrossRow], basis: str) -> dict[tuple[str, str, str | None, str], tuple[int, float]]:
    return {
        (row.from_channel, row.touchpoint, row.ref_id, row.to_channel): (
            row.conversions,
            round(row.revenue, 2),
        )
        for row in rows
        if row.basis == basis
    }


async def report_command(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``profile-store ARGS`` as a real process on the test's timeline (the server's loop keeps running)."""
    return await asyncio.to_thread(
        subprocess.run,
        cloud_command(*args),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


# ----- the join -----
async def test_a_store_exposure_then_an_online_sale_is_store_to_online(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_offer("run-shoes", SHOES, T0)
        batch = (
            decision("a" * 32, "run-shoes", T0, "p1"),
            exposure("a" * 32, T0 + 1 * US, "p1"),
            # Exposed too, but buys nothing the offer promoted: not attributed.
            decision("b" * 32, "run-shoes", T0, "p2"),
            exposure("b" * 32, T0 + 1 * US, "p2"),
        )
        await pushed(storage, "s1", *batch)
        await pushed(storage, "s1", *batch)  # resent: duplicates, taken into the join once
        # Three days later online: one matching line (a SKU), one not.
        shoes, mug = SaleLine("SHOE-2", 1, 80.0, "sports"), SaleLine("MUG", 2, 5.0, "home")
        assert not (
            await storage.post_sale(online_sale("web-1", "p1", T0 + 3 * DAY, shoes, mug), T0)
        ).duplicate
        await storage.post_sale(online_sale("web-2", "p2", T0 + 3 * DAY, mug), T0)
        # Outside the window: the exposure is 15 days old.
        await storage.post_sale(online_sale("web-3", "p1", T0 + 15 * DAY, shoes), T0)
        # Before the exposure: never attributed to it.
        await storage.post_sale(online_sale("web-4", "p1", T0 - DAY, shoes), T0)

        rows, totals = await storage.cross_channel(T0 - 2 * DAY, T0 + 30 * DAY, WINDOW)
        last = table(rows, "last_touch")
        assert last == {
            ("store", "offer", None, "online"): (1, 80.0),  # only the matching line's revenue
            ("store", "offer", "run-shoes", "online"): (1, 80.0),
        }
        assert table(rows, "any_touch") == last
        assert totals.sales == {"online": 4}
        assert totals.identified_sales == {"online": 4}
        assert totals.touches == {"offer": 2}
        assert totals.currencies == ("EUR",)

        # A window that ends before the sale has none of it.
        rows, _ = await storage.cross_channel(T0 - 2 * DAY, T0 + 2 * DAY, WINDOW)
        assert table(rows, "last_touch") == {}


async def test_a_campaign_then_a_store_sale_is_online_to_store_and_last_touch_takes_the_latest(
    db_url: str,
) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_offer("run-shoes", SHOES, T0)
        campaign = CampaignExposureRecord("cx-1", "p1", "spring-run", T0, (), "sports")
        assert (await storage.post_campaign_exposure(campaign, T0)).duplicate is False
        # A day later the store shows the shoes offer too, then the shopper buys socks (sports) there.
        await pushed(
            storage,
            "s1",
            decision("c" * 32, "run-shoes", T0 + DAY, "p1"),
            exposure("c" * 32, T0 + DAY, "p1"),
            conversion(
                T0 + 2 * DAY, "p1", [{"sku": "SOCK", "qty": 2, "price": 6.0, "category": "sports"}], 12.0
            ),
            # An anonymous sale counts in the totals, never attributed.
            conversion(
                T0 + 2 * DAY, None, [{"sku": "SOCK", "qty": 1, "price": 6.0, "category": "sports"}], 6.0
            ),
        )
        rows, totals = await storage.cross_channel(T0, T0 + 10 * DAY, WINDOW)
        # Last touch: the store's offer (a day later than the campaign); any touch: both.
        assert table(rows, "last_touch") == {
            ("store", "offer", None, "store"): (1, 12.0),
            ("store", "offer", "run-shoes", "store"): (1, 12.0),
        }
        assert table(rows, "any_touch") == {
            ("online", "campaign", None, "store"): (1, 12.0),
            ("online", "campaign", "spring-run", "store"): (1, 12.0),
            ("store", "offer", None, "store"): (1, 12.0),
            ("store", "offer", "run-shoes", "store"): (1, 12.0),
        }
        assert (totals.sales, totals.identified_sales) == ({"store": 2}, {"store": 1})
        assert totals.touches == {"campaign": 1, "offer": 1}

        # Online -> online, for completeness: the campaign and an online purchase of a SKU it named.
        await storage.post_campaign_exposure(
            CampaignExposureRecord("cx-2", "p2", "mugs", T0, ("MUG",), None), T0
        )
        await storage.post_sale(online_sale("web-9", "p2", T0 + DAY, SaleLine("MUG", 1, 5.0)), T0)
        rows, _ = await storage.cross_channel(T0, T0 + 10 * DAY, WINDOW)
        assert table(rows, "last_touch")[("online", "campaign", "mugs", "online")] == (1, 5.0)


async def test_what_the_join_cannot_use_is_counted_never_attributed(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_offer("run-shoes", SHOES, T0)
        await pushed(
            storage,
            "s1",
            exposure("d" * 32, T0, "p1"),  # its decision was never pushed (dropped telemetry)
            decision("e" * 32, "not-ours", T0, "p1"),  # an offer of the store's own file, not the cloud's
            exposure("e" * 32, T0, "p1"),
            decision("f" * 32, None, T0, "p1"),  # the fallback (holdout): nothing promoted, nothing skipped
            exposure("f" * 32, T0, "p1"),
            conversion(T0 + DAY, "p1", [], 0.0),  # a sale without items
            conversion(T0 + DAY, "p1", [{"sku": "SHOE-1", "qty": 1, "price": 9.0}], -5.0),  # a negative total
            conversion(T0 + DAY, "p1", [{"sku": "SHOE-1", "qty": 0, "price": 9.0}], 9.0),  # no quantity
        )
        rows, totals = await storage.cross_channel(T0 - DAY, T0 + 10 * DAY, WINDOW)
        assert rows == []
        assert totals.skipped == {
            EXPOSURE_WITHOUT_DECISION: 1,
            OFFER_NOT_IN_CATALOG: 1,
            SALE_WITHOUT_ITEMS: 1,
            "bad_conversion": 2,
        }
        assert totals.sales == {}
        assert totals.touches == {}


# ----- campaign exposures down to the stores -----
async def store_changes(storage: Storage, store_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    page = await storage.changes(0, 1000, PAGE_BUDGET_BYTES, store_id=store_id)
    return [(c.kind, c.id, c.op, c.data) for c in page.changes if c.kind == "campaign_exposure"]


async def test_a_campaign_exposure_goes_to_the_shoppers_stores_only_while_measurement_is_granted(
    db_url: str,
) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_store("sa", b"a" * 32, T0)
        await storage.put_store("sb", b"b" * 32, T0)
        await storage.put_profile("p1", {"visits": 1}, T0, home_store="sa")
        await storage.put_profile("p2", {"visits": 1}, T0, home_store="sa")
        await storage.put_consent("p1", "measurement", True, T0, "app", T0)

        one = CampaignExposureRecord("cx-1", "p1", "spring-run", T0, ("SHOE-1",), "sports")
        assert (await storage.post_campaign_exposure(one, T0)).stores == 1
        wire = {
            "shopper_id": "p1",
            "campaign_id": "spring-run",
            "at": "2027-01-15T08:00:00.000Z",
            "skus": ["SHOE-1"],
            "category": "sports",
        }
        assert await store_changes(storage, "sa") == [("campaign_exposure", "cx-1", "upsert", wire)]
        assert await store_changes(storage, "sb") == []  # sb does not hold p1
        # A repost of the id is a duplicate: the first content stands, nothing is sent again.
        again = CampaignExposureRecord("cx-1", "p1", "other", T0, ("X",), None)
        assert (await storage.post_campaign_exposure(again, T0)).duplicate
        assert await store_changes(storage, "sa") == [("campaign_exposure", "cx-1", "upsert", wire)]

        # p2 never granted measurement: stored (the cloud's own join uses it), never sent.
        two = CampaignExposureRecord("cx-2", "p2", "spring-run", T0, (), "sports")
        assert (await storage.post_campaign_exposure(two, T0)).stores == 0
        assert [c[1] for c in await store_changes(storage, "sa")] == ["cx-1"]

        # A withdrawal sends a delete; a new grant sends it again.
        await storage.put_consent("p1", "measurement", False, T0 + US, "app", T0)
        assert await store_changes(storage, "sa") == [("campaign_exposure", "cx-1", "delete", {})]
        await storage.put_consent("p1", "measurement", True, T0 + 2 * US, "app", T0)
        assert await store_changes(storage, "sa") == [("campaign_exposure", "cx-1", "upsert", wire)]

        # A store that starts to hold the shopper gets it with their state; one that stops, its delete.
        await storage.put_profile("p1", {"visits": 1}, T0, home_store="sb")
        assert await store_changes(storage, "sb") == [("campaign_exposure", "cx-1", "upsert", wire)]
        assert await store_changes(storage, "sa") == [("campaign_exposure", "cx-1", "delete", {})]

        # An erasure: the rows go, the log keeps no change of theirs, the join forgets their touches.
        outcome = await storage.erase_shopper("p1", T0 + DAY)
        assert outcome.campaign_exposures == 1
        assert await store_changes(storage, "sb") == []
        assert await store_changes(storage, "sa") == []
        _, totals = await storage.cross_channel(T0 - DAY, T0 + DAY, WINDOW)
        assert totals.touches == {"campaign": 1}  # p2's only
        # Reposted from before the erasure: kept without the shopper, sent nowhere.
        late = CampaignExposureRecord("cx-3", "p1", "spring-run", T0, (), "sports")
        assert (await storage.post_campaign_exposure(late, T0 + 2 * DAY)).anonymous
        assert await store_changes(storage, "sb") == []


async def test_an_erasure_unlinks_the_shoppers_sales(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_offer("run-shoes", SHOES, T0)
        await pushed(storage, "s1", decision("a" * 32, "run-shoes", T0, "p1"), exposure("a" * 32, T0, "p1"))
        await storage.post_sale(online_sale("web-1", "p1", T0 + DAY, SaleLine("SHOE-1", 1, 80.0)), T0)
        rows, _ = await storage.cross_channel(T0, T0 + 2 * DAY, WINDOW)
        assert rows
        await storage.erase_shopper("p1", T0 + 2 * DAY)
        rows, totals = await storage.cross_channel(T0, T0 + 2 * DAY, WINDOW)
        assert rows == []
        assert (totals.sales, totals.identified_sales, totals.touches) == ({"online": 1}, {"online": 0}, {})


# ----- over HTTP -----
SALE = {
    "id": "web-1",
    "shopper_id": "p1",
    "at": "2027-03-01T08:00:00Z",
    "channel": "online",
    "items": [{"sku": "SHOE-1", "qty": 1, "price": 80.0, "category": "sports"}],
    "total": 80.0,
    "currency": "EUR",
}


async def test_malformed_posts_are_refused_with_a_reason(tmp_path: Path) -> None:
    bad_sales = {
        "no items": {**SALE, "items": []},
        "negative total": {**SALE, "total": -1},
        "not online": {**SALE, "channel": "store"},
        "unknown category": {**SALE, "items": [{"sku": "A", "qty": 1, "price": 1.0, "category": "cars"}]},
        "zero qty": {**SALE, "items": [{"sku": "A", "qty": 0, "price": 1.0}]},
        "bad currency": {**SALE, "currency": "eur"},
        "no id": {key: value for key, value in SALE.items() if key != "id"},
        "unknown key": {**SALE, "coupon": "X"},
        "far future": {**SALE, "at": "2027-03-02T09:00:00Z"},
        "not a date": {**SALE, "at": "yesterday"},
    }
    exposure_ok = {
        "id": "cx-1",
        "shopper_id": "p1",
        "campaign_id": "spring",
        "at": "2027-03-01T08:00:00Z",
        "skus": ["SHOE-1"],
    }
    bad_exposures = {
        "promotes nothing": {**exposure_ok, "skus": []},
        "no shopper": {key: value for key, value in exposure_ok.items() if key != "shopper_id"},
        "bad sku": {**exposure_ok, "skus": [""]},
    }
    async with running_profile_store(tmp_path) as kit:
        for name, body in bad_sales.items():
            answer = await kit.admin("POST", "/admin/v1/sales", body, expect=400)
            assert answer["error"] == "invalid" and answer["detail"], name
        for name, body in bad_exposures.items():
            answer = await kit.admin("POST", "/admin/v1/campaign-exposures", body, expect=400)
            assert answer["error"] == "invalid" and answer["detail"], name
        # Nothing of it was stored; the good ones are, once.
        assert (await kit.stats())["sales"] == 0
        first = check("SalePosted", await kit.admin("POST", "/admin/v1/sales", SALE))
        assert first == {"id": "web-1", "duplicate": False, "anonymous": False}
        resent = await kit.admin("POST", "/admin/v1/sales", {**SALE, "total": 99.0})
        assert resent["duplicate"] is True
        posted = check(
            "CampaignExposurePosted", await kit.admin("POST", "/admin/v1/campaign-exposures", exposure_ok)
        )
        assert posted == {"id": "cx-1", "duplicate": False, "anonymous": False, "stores": 0}
        stats = await kit.stats()
        assert (stats["sales"], stats["campaign_exposures"]) == (1, 1)


async def test_the_report_route_and_the_command_agree(tmp_path: Path) -> None:
    async with running_profile_store(tmp_path) as kit:
        token = await kit.add_store("s1")
        await kit.add_shopper("p1", {"visits": 1}, ["measurement"])
        await kit.put_offer(SHOES)
        decision_id = "a" * 32
        events = [
            {
                "id": str(uuid.uuid4()),
                "kind": "decision",
                "class": "telemetry",
                "at": "2027-02-27T10:00:00Z",
                "shopper_id": "p1",
                "data": decision(decision_id, "run-shoes", 0, "p1").data,
            },
            {
                "id": str(uuid.uuid4()),
                "kind": "exposure",
                "class": "telemetry",
                "at": "2027-02-27T10:00:01Z",
                "shopper_id": "p1",
                "data": exposure(decision_id, 0, "p1").data,
            },
        ]
        status, answer = await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": events})
        assert (status, answer["accepted"]) == (200, 2)
        await kit.admin("POST", "/admin/v1/sales", SALE)

        query = "?since=2027-02-01&until=2027-03-01"
        report = check(
            "CrossChannelReport", await kit.admin("GET", f"/admin/v1/reports/cross-channel{query}")
        )
        store_offer = report["last_touch"][0]
        assert (store_offer["from"], store_offer["touchpoint"]) == ("store", "offer")
        assert store_offer["to"]["online"] == {"conversions": 1, "revenue": 80.0}
        assert report["last_touch_by_id"] == [
            {
                "from": "store",
                "touchpoint": "offer",
                "id": "run-shoes",
                "to": "online",
                "conversions": 1,
                "revenue": 80.0,
            }
        ]
        assert report["counts"]["sales"] == {"store": 0, "online": 1}
        await kit.admin(
            "GET", "/admin/v1/reports/cross-channel?since=2027-03-02&until=2027-03-01", expect=400
        )
        await kit.admin("GET", "/admin/v1/reports/cross-channel?since=2027-02-01", expect=400)

        # The command, a real process on the test's timeline, prints the same document.
        args = ["report", "--db", kit.db_url, "--since", "2027-02-01", "--until", "2027-03-01"]
        printed = json.loads((await report_command(*args, "--format", "json")).stdout)
        assert printed == {**report, "generated_at": printed["generated_at"]}
        lines = (await report_command(*args)).stdout.splitlines()
        store_row = next(line for line in lines if line.startswith("store offer"))
        assert store_row.split()[2:6] == ["0", "0.00", "1", "80.00"]  # -> store: none; -> online: 1, 80.00
        refused = await report_command(*args[:-1], "2027-01-01", check=False)  # --until before --since
        assert refused.returncode == 2
        assert "--until must be after --since" in refused.stderr
