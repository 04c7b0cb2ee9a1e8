"""The staff tablet page in headless Chromium, against mosquitto's websockets listener and a real gateway:
a notice of its team appears (another team's does not), the `assisting` click is stored in the ledger
(`staff_interactions`), the withdrawal removes it; an override of a device of the team's zones is applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.browser.pages import PLAYER, StoreBroker, client, gateway_login, page_url, store_broker
from tests.gateway.test_staff import _store as staff_store
from tests.support.browser import serve_static
from tests.support.gateway import running_gateway
from tests.support.store import ROOT
from tests.support.wait import until

DEVICE = """
[[devices]]
id = "fitting-trv"
zone = "fitting-rooms"
kind = "climate"
adapter = "zigbee2mqtt"
address = "fitting trv"
min_interval_s = 0.5
[devices.capabilities]
temperature = { default = 21, min = 18, max = 25, step = 0.5 }
"""


@pytest.fixture
def ws_broker(tmp_path: Path) -> Iterator[StoreBroker]:
    yield from store_broker(tmp_path, ["gateway", "checkin", "staff"])


async def test_the_tablet_shows_its_teams_notices_stores_the_answer_and_drops_withdrawn_ones(
    tmp_path: Path, ws_broker: StoreBroker, page: Page
) -> None:
    store = staff_store(tmp_path / "store", ws_broker.port)
    config = store.config_path.read_text().replace(
        "teams = { fitting = ", 'teams = { cafe = ["cafe"], fitting = '
    )
    store.config_path.write_text(config + DEVICE)
    gateway_login(store, ws_broker)
    async with (
        running_gateway(store.settings()) as gateway,
        client(ws_broker, "observer", "store/#", "zigbee2mqtt/#") as probe,
        client(ws_broker, "checkin") as app,
        serve_static({"/player": PLAYER}) as base_url,
    ):
        generation = gateway.generation
        assert generation is not None
        query = {"team": "fitting", "devices": "fitting-trv:temperature"}
        await page.goto(page_url(base_url, "staff.html", ws_broker, "staff", **query))
        await page.locator("#status[data-state=online]").wait_for()

        # Ana comes into the fitting rooms (her team's), Quiet into the cafe (another team's)
        await app.publish(f"{ROOT}/checkin", store.checkin("p-quiet", zone="cafe"))
        await until(lambda: bool(probe.json_on(f"{ROOT}/staff/notice/cafe")))
        await app.publish(f"{ROOT}/checkin", store.checkin("p-vip", zone="fitting-rooms"))
        await until(lambda: bool(probe.json_on(f"{ROOT}/staff/notice/fitting")))
        notice = probe.json_on(f"{ROOT}/staff/notice/fitting")[0]
        card = page.locator(f"[data-notice='{notice['notice_id']}']")
        await card.wait_for(state="visible")
        text = await card.text_content() or ""
        assert "Ana" in text and "fitting-rooms" in text and "speaks pt" in text
        assert await page.locator(".notice").count() == 1  # not the cafe team's notice
        assert "p-vip" not in await page.content()

        # "I'm on it": the staff ack, stored once in the ledger
        await card.locator("[data-action=assisting]").click()
        await until(
            lambda: generation.staff is not None and generation.staff.stats().answers.get("assisting") == 1
        )

        async def stored() -> list[tuple[str, str]]:
            return [(row[0], row[1]) for row in await generation.ledger.staff_interactions()]

        rows: list[tuple[str, str]] = []

        async def answer_stored() -> bool:
            rows[:] = await stored()
            return bool(rows)

        await until(answer_stored, what="the staff answer in the ledger")
        assert rows == [(notice["notice_id"], "assisting")]

        # An override of the team's thermostat from the tablet: the gateway applies it
        await page.locator("[data-device=fitting-trv] input[type=text]").fill("23.5")
        await page.locator("[data-device=fitting-trv] [data-action=override]").click()
        await until(lambda: bool(probe.json_on(f"{ROOT}/device/fitting-trv/override")))
        assert probe.json_on(f"{ROOT}/device/fitting-trv/override")[-1] == {
            "v": 1,
            "values": {"temperature": 23.5},
            "for_s": 900,
        }

        async def overridden() -> bool:
            settings = await generation.ledger.device_settings()
            return any(
                reason == "override" and json.loads(values) == {"temperature": 23.5}
                for device, _, reason, values, _ in settings
                if device == "fitting-trv"
            )

        await until(overridden, what="the override in the ledger")
        assert not any(key.startswith("override.") for key in generation.rejects.as_dict())

        # Ana leaves for the cafe: the notice is withdrawn and the card goes
        await app.publish(f"{ROOT}/checkin", store.checkin("p-vip", zone="cafe"))
        await card.wait_for(state="detached")
        assert await page.locator(".notice").count() == 0
        assert await page.locator("#none").is_visible()
