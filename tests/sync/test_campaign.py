"""Online and offline together, the real gateway and the real reference cloud (issue 16, section 3).

- a campaign exposure posted to the cloud reaches the gateway's ``campaign_exposures`` (only for a shopper
  whose ``measurement`` consent is granted), a POS sale in the store follows, and the cloud's report shows
  online -> store; an erasure removes the exposure on both sides;
- an offer shown (and acked) in the store, then an online sale of its category: store -> online.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.clock import iso_utc
from edge.daemon import Gateway
from edge.decide.catalog import load_catalog
from edge.events import Purpose
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.store import REPO, ROOT, STORE, StoreKit, synced_store
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"
DAY_S = 86_400.0


@contextlib.asynccontextmanager
async def cloud_and_store(
    tmp_path: Path, mosquitto: Mosquitto
) -> AsyncIterator[tuple[ProfileStoreKit, StoreKit, Gateway]]:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.add_shopper("p-cloud", {"visits": 3}, ["personalization", "measurement"])
        await cloud.add_shopper("p-nomeasure", {"visits": 1}, ["personalization"])
        store = synced_store(tmp_path, mosquitto.port, cloud.base_url, token)
        async with running_gateway(store.settings()) as gateway:
            flow = gateway.generation
            await until(lambda: flow.consents.has("p-cloud", Purpose.MEASUREMENT))
            yield cloud, store, gateway


def campaign_rows(store: StoreKit) -> list[tuple[str, str, str, str]]:
    """(exposure id, shopper, campaign, skus) of the gateway's ``campaign_exposures``, read beside it."""
    with contextlib.closing(
        sqlite3.connect(f"file:{store.workdir / 'ledger.sqlite'}?mode=ro", uri=True)
    ) as db:
        return [
            (str(a), str(b), str(c), str(d))
            for a, b, c, d in db.execute(
                "SELECT exposure_id, shopper_id, campaign_id, skus FROM campaign_exposures ORDER BY exposure_id"
            )
        ]


def report_query() -> str:
    today = iso_utc(clock.now())[:10]
    return f"/admin/v1/reports/cross-channel?since={today}&until={today}"


def cell(report: dict[str, Any], basis: str, from_channel: str, to: str) -> dict[str, Any]:
    row = next(row for row in report[basis] if row["from"] == from_channel)
    return dict(row["to"][to])


async def test_a_campaign_exposure_goes_down_and_a_store_sale_is_attributed_online_to_store(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with cloud_and_store(tmp_path, mosquitto) as (cloud, store, gateway):
        seen_at = iso_utc(clock.now() - DAY_S)
        # First the shopper without measurement: stored by the cloud, never sent to the store.
        refused = await cloud.admin(
            "POST",
            "/admin/v1/campaign-exposures",
            {
                "id": "cx-nomeasure",
                "shopper_id": "p-nomeasure",
                "campaign_id": "spring-run",
                "at": seen_at,
                "skus": ["SOCK-1"],
            },
        )
        assert refused["stores"] == 0
        sent = await cloud.admin(
            "POST",
            "/admin/v1/campaign-exposures",
            {
                "id": "cx-1",
                "shopper_id": "p-cloud",
                "campaign_id": "spring-run",
                "at": seen_at,
                "skus": ["SOCK-1", "SOCK-2"],
                "category": "sports",
            },
        )
        assert sent["stores"] == 1
        # Pulled in the cloud's order: once cx-1 is here, cx-nomeasure would have been too.
        await until(lambda: campaign_rows(store) != [])
        assert campaign_rows(store) == [("cx-1", "p-cloud", "spring-run", '["SOCK-1","SOCK-2"]')]
        pulled, _ = await cloud.pull_all(STORE, (tmp_path / "store" / "cloud-token").read_text())
        assert [c["id"] for c in pulled if c["kind"] == "campaign_exposure"] == ["cx-1"]

        # A sale at the till, the shopper identified by their token: a conversion event naming them.
        sale = {
            "v": 1,
            "ts": iso_utc(clock.now()),
            "txn_id": "t-1",
            "token": store.token("p-cloud"),
            "items": [{"sku": "SOCK-2", "qty": 2, "price": 7.5}, {"sku": "WATER", "qty": 1, "price": 1.0}],
        }
        async with Probe(mosquitto.port, f"{ROOT}/gateway/status") as till:
            await till.publish(f"{ROOT}/pos/1/transaction", json.dumps(sale).encode())

        async def converted() -> bool:
            return any(event["kind"] == "conversion" for event in await cloud.events(STORE))

        await until(converted)
        report = await cloud.admin("GET", report_query())
        assert cell(report, "last_touch", "online", "store") == {"conversions": 1, "revenue": 15.0}
        assert cell(report, "any_touch", "online", "store") == {"conversions": 1, "revenue": 15.0}
        assert report["last_touch_by_id"] == [
            {
                "from": "online",
                "touchpoint": "campaign",
                "id": "spring-run",
                "to": "store",
                "conversions": 1,
                "revenue": 15.0,
            }
        ]
        assert report["counts"]["identified_sales"]["store"] == 1

        # A withdrawal of measurement in the cloud: the store forgets the exposure.
        await cloud.put_consent("p-cloud", "measurement", False, source="app")
        await until(lambda: campaign_rows(store) == [])
        await cloud.put_consent("p-cloud", "measurement", True, source="app")
        await until(lambda: campaign_rows(store) != [])

        # Erasure: gone on both sides.
        await cloud.erase("p-cloud")
        await until(lambda: campaign_rows(store) == [])
        assert gateway.ledger is not None
        await until(lambda: gateway.ledger.replica.tombstone("p-cloud") is not None)
        stats = await cloud.stats()
        assert stats["campaign_exposures"] == 1  # p-nomeasure's only
        report = await cloud.admin("GET", report_query())
        assert cell(report, "any_touch", "online", "store") == {"conversions": 0, "revenue": 0.0}


async def test_an_offer_shown_in_the_store_then_an_online_sale_is_store_to_online(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.add_shopper("p-cloud", {"visits": 3}, ["personalization", "measurement"])
        # The chain's catalog is the cloud's: the store's file offers, each promoting one SKU of its own.
        catalog = load_catalog(REPO / "config/offers.example.toml").offers
        for offer in catalog:
            await cloud.put_offer({**offer.model_dump(mode="json"), "skus": [f"SKU-{offer.id}"]})
        store = synced_store(tmp_path, mosquitto.port, cloud.base_url, token)
        async with (
            running_gateway(store.settings()) as gateway,
            Probe(mosquitto.port, f"{ROOT}/#") as display,
        ):
            flow = gateway.generation
            await until(lambda: flow.consents.has("p-cloud", Purpose.MEASUREMENT))
            await display.publish(f"{ROOT}/checkin", store.checkin("p-cloud", zone="cafe"))
            await display.wait_for(lambda: [m for m in display.json_on(CONTENT) if m.get("offer_id")])
            manifest = [m for m in display.json_on(CONTENT) if m.get("offer_id")][-1]
            ack = {
                "v": 1,
                "version": manifest["version"],
                "decision_id": manifest["decision_id"],
                "status": "shown",
            }
            await display.publish(f"{ROOT}/display/screen-cafe/ack", ack)

            async def exposed() -> bool:
                return any(event["kind"] == "exposure" for event in await cloud.events(STORE))

            await until(exposed)

        # The shopper buys the offer's SKU online a minute later (and something else).
        offer_id = manifest["offer_id"]
        sale = {
            "id": "web-1",
            "shopper_id": "p-cloud",
            "at": iso_utc(clock.now() + 60),
            "channel": "online",
            "items": [
                {"sku": f"SKU-{offer_id}", "qty": 1, "price": 12.0},
                {"sku": "OTHER", "qty": 1, "price": 3.0},
            ],
            "total": 15.0,
            "currency": "EUR",
        }
        await cloud.admin("POST", "/admin/v1/sales", sale)
        report = await cloud.admin("GET", report_query())
        assert cell(report, "last_touch", "store", "online") == {"conversions": 1, "revenue": 12.0}
        assert report["last_touch_by_id"] == [
            {
                "from": "store",
                "touchpoint": "offer",
                "id": offer_id,
                "to": "online",
                "conversions": 1,
                "revenue": 12.0,
            }
        ]
        assert report["counts"]["touches"]["offer"] == 1
        assert report["counts"]["skipped"] == {}
