"""The store dashboard in headless Chromium (Debian's, through Playwright: tests/support/browser.py) against a
real gateway and mosquitto: the page follows check-ins live (counts, the screen's offer, the decisions), and
neither its rendered HTML nor the event stream the browser receives names a shopper; with a password, the page
is nothing without it and works with it (the browser's basic auth carries to the stream)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from edge.config import load_settings
from tests.control.test_dashboard import SHOPPER_IDS
from tests.control.test_dashboard import _store as dashboard_store
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT

# Reads the page's own stream from inside the page: the first ``count`` snapshot events as the browser got them.
READ_STREAM = """async (count) => {
  const events = new EventSource("/api/events");
  const raw = [];
  await new Promise((resolve, reject) => {
    events.addEventListener("snapshot", (event) => {
      raw.push(event.data);
      if (raw.length >= count) resolve();
    });
    events.onerror = () => reject(new Error("the stream failed"));
  });
  events.close();
  return raw.join("\\n");
}"""


async def test_the_page_follows_check_ins_and_names_no_shopper(
    page: Page, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = dashboard_store(tmp_path, mosquitto.port)
    async with (
        Probe(mosquitto.port, f"{ROOT}/display/#") as probe,
        running_gateway(load_settings(store.config_path)) as gateway,
    ):
        dashboard = gateway.dashboard
        assert dashboard is not None
        await page.goto(dashboard.url)
        await expect(page.locator("#status")).to_have_text("live")
        await expect(page.locator("#store")).to_have_text("s1")
        zones = page.locator("#zones tbody tr")
        await expect(zones.nth(0).locator("td")).to_have_text(["cafe", "0", "0", "—"])
        screens = page.locator("#screens tbody tr")
        await expect(screens.nth(0).locator("td").nth(2)).to_have_text("fallback")
        await expect(page.locator("#decisions tbody tr")).to_have_text(["none"])

        for shopper in SHOPPER_IDS:
            await probe.publish(f"{ROOT}/checkin", store.checkin(shopper, zone="cafe"))

        await expect(zones.nth(0).locator("td")).to_have_text(["cafe", "2", "2", "—"])
        await expect(zones.nth(1).locator("td")).to_have_text(["entrance", "0", "0", "—"])
        await expect(page.locator("#decisions tbody tr")).to_have_count(2)
        generation = gateway.generation
        assert generation is not None
        decision = generation.board.current("screen-cafe")
        assert decision is not None and decision.offer_id is not None
        offer = generation.decider.engine.catalog.get(decision.offer_id)
        assert offer is not None
        cafe = screens.nth(0).locator("td")
        await expect(cafe.nth(0)).to_have_text("screen-cafe")
        await expect(cafe.nth(2)).to_have_text(offer.title)
        await expect(cafe.nth(6)).to_have_text("online")
        await expect(page.locator("#health")).to_contain_text("connected")
        await expect(page.locator("#alerts")).to_have_text("no alerts")

        html = await page.content()
        stream = await page.evaluate(READ_STREAM, 2)
        assert '"people":2' in stream  # the stream the browser reads, with the check-ins in it
        shot = await page.screenshot(full_page=True)
    for shopper in SHOPPER_IDS:
        assert shopper not in html, shopper
        assert shopper not in stream, shopper
    assert "shopper_id" not in html + stream
    assert len(shot) > 10_000  # a drawn page, not a blank one (a blank 1280x720 PNG is a few KB)


async def test_with_a_password_the_page_needs_it_and_the_stream_follows(
    page: Page, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = dashboard_store(tmp_path, mosquitto.port)
    (store.workdir / "dashboard-password").write_text("correct horse\n")
    store.config_path.write_text(store.config_path.read_text() + 'password_file = "dashboard-password"\n')
    async with running_gateway(load_settings(store.config_path)) as gateway:
        dashboard = gateway.dashboard
        assert dashboard is not None
        # The browser is asked for a login it does not have: nothing of the page loads.
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            await page.goto(dashboard.url)
        for path in ("", "api/snapshot", "api/events"):
            refused = await page.request.get(dashboard.url + path)
            assert refused.status == 401, path
            assert "Store dashboard" not in await refused.text()
        login = base64.b64encode(b"store:correct horse").decode()
        await page.context.set_extra_http_headers({"Authorization": f"Basic {login}"})
        answered = await page.goto(dashboard.url)
        assert answered is not None and answered.status == 200
        await expect(page.locator("#status")).to_have_text("live")
        await expect(page.locator("#zones tbody tr").nth(0).locator("td").nth(0)).to_have_text("cafe")
