"""The kiosk page in headless Chromium, against mosquitto's websockets listener and a real gateway.

The pairing flow end to end: the page shows its QR; the test reads it from a screenshot with OpenCV's QR
detector (what a phone's camera does), mints the check-in token with the code as the app's backend would,
publishes the check-in as the app; the kiosk shows the shopper's content (and the sign beside it does not).
"What do you hold about me?": the second QR (request=my_data) is read the same way, and the kiosk shows the
`my-data` summary of that shopper only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest
from playwright.async_api import Page

from tests.browser.pages import (
    PLAYER,
    StoreBroker,
    catalog_assets,
    client,
    gateway_login,
    open_page,
    page_url,
    store_broker,
)
from tests.support.browser import serve_static
from tests.support.gateway import running_gateway
from tests.support.store import ROOT, STORE, StoreKit, make_store
from tests.support.wait import until

KIOSK = "screen-cafe"
SIGN = "sign-cafe"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    """player/ and the catalog's images over HTTP; the base URL."""
    async with serve_static({"/player": PLAYER, "/assets": catalog_assets(tmp_path / "assets")}) as base:
        yield base


def _kiosk(served: str, broker: StoreBroker, assets: str = "assets/") -> str:
    return page_url(served, "kiosk.html", broker, KIOSK, display=KIOSK, assets=f"{served}/{assets}")


@pytest.fixture
def ws_broker(tmp_path: Path) -> Iterator[StoreBroker]:
    yield from store_broker(tmp_path, ["gateway", "checkin", KIOSK])


def _store(tmp_path: Path, broker: StoreBroker) -> StoreKit:
    store = make_store(tmp_path / "store", broker.port, ttl_s=600)
    gateway_login(store, broker)
    config = store.config_path.read_text().replace(f'id = "{KIOSK}"\n', f'id = "{KIOSK}"\nui = true\n', 1)
    config += f'[[displays]]\nid = "{SIGN}"\nzone = "cafe"\nmin_display_s = 0\n\n'
    store.config_path.write_text(config)
    return store


async def _scan(page: Page) -> str:
    """What a phone reads from the kiosk's screen: the QR decoded from a screenshot by OpenCV."""
    shot = await page.screenshot(full_page=True)
    image = cv2.imdecode(np.frombuffer(shot, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    text, points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert points is not None and text, "no QR code readable on the kiosk's screen"
    return str(text)


def _paired(scanned: str) -> dict[str, str]:
    parts = urlsplit(scanned)
    assert f"{parts.scheme}:{parts.path}" == "edgegw:pair", scanned
    return {key: values[0] for key, values in parse_qs(parts.query).items()}


def _checkin(store: StoreKit, shopper: str, pairing: dict[str, str], **extra: Any) -> dict[str, Any]:
    """What the app publishes after its backend minted a token for the scanned kiosk code."""
    token = store.token(shopper, display=pairing["display"], pairing=pairing["code"])
    return {"v": 1, "token": token, "zone": "cafe", "source": "kiosk", **extra}


async def test_a_shopper_pairs_with_the_kiosk_by_its_qr_and_sees_their_data_there_only(
    tmp_path: Path, ws_broker: StoreBroker, page: Page, served: str
) -> None:
    store = _store(tmp_path, ws_broker)
    async with (
        running_gateway(store.settings()) as gateway,
        client(ws_broker, "observer", "store/#") as probe,
        client(ws_broker, "checkin") as app,
    ):
        generation = gateway.generation
        assert generation is not None
        await open_page(page, _kiosk(served, ws_broker))
        await page.wait_for_function("window.kiosk && window.kiosk.pairings > 0")
        await page.locator("#pair").wait_for(state="visible")

        # The phone reads the QR: this store, this kiosk, the code the gateway published for it
        pairing = _paired(await _scan(page))
        published = probe.json_on(f"{ROOT}/display/{KIOSK}/pairing")[-1]
        assert pairing == {"store": STORE, "display": KIOSK, "code": published["code"]}

        # The app's backend mints the token with the code; the app publishes the kiosk check-in
        await app.publish(f"{ROOT}/checkin", _checkin(store, "p-full", pairing))
        content = f"{ROOT}/display/{KIOSK}/content"
        await until(lambda: any(m.get("decision_id") for m in probe.json_on(content)))
        manifest = next(m for m in probe.json_on(content) if m.get("decision_id"))
        headline = manifest["data"]["headline"]
        await page.locator("#stage h1.headline").wait_for(state="visible")
        assert await page.locator("#stage h1.headline").text_content() == headline
        assert await page.locator("#pair").is_hidden()
        # Served on that kiosk alone; and the kiosk's ack became an exposure
        assert not any(m.get("decision_id") for m in probe.json_on(f"{ROOT}/display/{SIGN}/content"))
        await until(lambda: bool(probe.json_on(f"{ROOT}/display/{KIOSK}/ack")))
        ack = probe.json_on(f"{ROOT}/display/{KIOSK}/ack")[-1]
        assert (ack["decision_id"], ack["status"]) == (manifest["decision_id"], "shown")
        exposures: list[dict[str, object]] = []

        async def exposed() -> bool:
            exposures[:] = await generation.ledger.exposures()
            return bool(exposures)

        await until(exposed, what="the kiosk's exposure in the ledger")
        assert [row["decision_id"] for row in exposures] == [manifest["decision_id"]]

        # Another shopper is in the same zone (checked in with the app): their data must never show here
        await app.publish(f"{ROOT}/checkin", store.checkin("p-nomeasure", zone="cafe"))
        await until(lambda: generation.floor.presence.zone_of("p-nomeasure") == "cafe")

        # "What do you hold about me?": a second scan, a fresh paired token, the app asks my_data
        await page.locator("#my-data").click()
        await page.locator("#pair").wait_for(state="visible")
        second = await _scan(page)
        assert second.endswith("&request=my_data")
        again = _paired(second)
        assert again["code"] != pairing["code"]  # a used code was replaced at once
        await app.publish(
            f"{ROOT}/checkin", _checkin(store, "p-full", again, request="my_data", display=KIOSK)
        )
        await page.locator("#stage .consents").wait_for(state="visible")
        shown = {
            await item.get_attribute("data-purpose"): await item.text_content()
            for item in await page.locator("#stage .consents li").all()
        }
        # p-full's choices (docs: SHOPPERS in tests/support/store.py), not p-nomeasure's
        assert shown["measurement"] == "measurement: granted"
        assert shown["camera_checkin"] == "camera_checkin: granted"
        html = await page.content()
        text = await page.locator("#stage").inner_text()
        assert "[object" not in text and "undefined" not in text  # every value rendered as text
        assert "p-full" not in html and "p-nomeasure" not in html
        summary = next(m for m in probe.json_on(content) if m.get("template") == "my-data")
        assert await page.locator("[data-count=decisions]").text_content() == str(
            summary["data"]["decisions"]
        )
        assert json.dumps(summary).count("p-") == 0
        days = round(summary["data"]["retention_days"]["decisions"])
        assert f"decisions: deleted after {days} days" in text
        # Nothing of either shopper reached the sign
        assert all(m.get("template") != "my-data" for m in probe.json_on(f"{ROOT}/display/{SIGN}/content"))
        assert generation.rejects.as_dict().get("checkin.bad_pairing", 0) == 0


async def test_a_code_somebody_used_first_is_refused_and_the_kiosk_keeps_serving_them(
    tmp_path: Path, ws_broker: StoreBroker, page: Page, served: str
) -> None:
    store = _store(tmp_path, ws_broker)
    async with (
        running_gateway(store.settings()) as gateway,
        client(ws_broker, "observer", "store/#") as probe,
        client(ws_broker, "checkin") as app,
    ):
        generation = gateway.generation
        assert generation is not None
        await open_page(page, _kiosk(served, ws_broker))
        await page.wait_for_function("window.kiosk && window.kiosk.pairings > 0")
        pairing = _paired(await _scan(page))
        # Two phones scanned the same QR; the first check-in uses the code and the kiosk serves that shopper
        await app.publish(f"{ROOT}/checkin", _checkin(store, "p-nomeasure", pairing))
        ack = f"{ROOT}/display/{KIOSK}/ack"
        await until(lambda: bool(probe.json_on(ack)))
        served_version = probe.json_on(ack)[-1]["version"]
        await page.wait_for_function("window.kiosk.pairings > 1")  # a new code, published at once
        # The second phone's check-in with the used code: refused, counted, and the kiosk stays as it was
        await app.publish(f"{ROOT}/checkin", _checkin(store, "p-full", pairing))
        await until(lambda: generation.rejects.as_dict().get("checkin.bad_pairing") == 1)
        assert probe.json_on(f"{ROOT}/display/{KIOSK}/content")[-1]["version"] == served_version
        assert await page.locator("#stage").get_attribute("data-version") == str(served_version)
        assert generation.floor.presence.zone_of("p-full") is None  # the refused check-in placed nobody


async def test_an_offer_whose_image_cannot_load_is_acked_failed_and_the_kiosk_keeps_its_qr(
    tmp_path: Path, ws_broker: StoreBroker, page: Page, served: str
) -> None:
    store = _store(tmp_path, ws_broker)
    async with (
        running_gateway(store.settings()) as gateway,
        client(ws_broker, "observer", "store/#") as probe,
        client(ws_broker, "checkin") as app,
    ):
        generation = gateway.generation
        assert generation is not None
        # Every offer's image is missing there
        await open_page(page, _kiosk(served, ws_broker, assets="no-such-assets/"))
        await page.wait_for_function("window.kiosk && window.kiosk.pairings > 0")
        await app.publish(f"{ROOT}/checkin", _checkin(store, "p-full", _paired(await _scan(page))))
        ack = f"{ROOT}/display/{KIOSK}/ack"
        await until(lambda: bool(probe.json_on(ack)))
        sent = probe.json_on(ack)[-1]
        assert sent["status"] == "failed" and "shown_at" not in sent
        assert await page.locator("#pair").is_visible() and await page.locator("#stage").is_hidden()
        # The gateway counts it as a failure of this kiosk, not an exposure
        await until(lambda: generation.stats.acks_failed_by_display[KIOSK] == 1)
        assert await generation.ledger.exposures() == []
