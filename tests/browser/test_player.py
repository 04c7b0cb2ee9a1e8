"""The reference display player (player/index.html) in Debian's headless Chromium, against mosquitto's
websockets listener (the shipped ACL, the display logging in with its own password) and a real gateway.

The page's clock is Playwright's fake clock, installed at the gateway's time: ``shown_at`` is then on the
gateway's timeline, and an expiry is reached by moving the page's clock, never by waiting.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from PIL import Image
from playwright.async_api import Page, Route

from edge.clock import ManualClock, parse_iso_utc
from edge.decide.catalog import load_catalog
from edge.demo.pages import CARD_SIZE, serve_pages
from edge.demo.run import catalog_pictures as demo_pictures
from tests.ops.clients import REPO, Client, make_passwords, write_password_file
from tests.support.broker import Mosquitto
from tests.support.browser import serve_static
from tests.support.clock import PinnedClock
from tests.support.gateway import running_gateway
from tests.support.launch import child_env, gateway_command
from tests.support.mqtt import Probe
from tests.support.store import ROOT, STORE, StoreKit, make_store
from tests.support.wait import until

DISPLAY = "screen-cafe"
CONTENT = f"{ROOT}/display/{DISPLAY}/content"
ACK = f"{ROOT}/display/{DISPLAY}/ack"
AVAILABILITY = f"{ROOT}/display/{DISPLAY}/availability"
STATUS = f"{ROOT}/gateway/status"
TTL_S = 30.0
# The test's own observer, added to a copy of the shipped ACL: it reads everything and writes nothing.
OBSERVER = "\n# test only\nuser observer\ntopic read #\n"


@dataclass
class Broker:
    mosquitto: Mosquitto
    passwords: dict[str, str]

    def client(self, user: str, *filters: str) -> Client:
        return Client(self.mosquitto.port, user, self.passwords[user], *filters)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The store's broker as shipped (its ACL, no anonymous clients), TCP and websockets listeners."""
    folder = tmp_path / "broker"
    folder.mkdir()
    acl = folder / "edge-gateway.acl"
    acl.write_text((REPO / "config/mosquitto/edge-gateway.acl").read_text() + OBSERVER)
    passwords = make_passwords(["gateway", "checkin", DISPLAY, "observer"])
    mosquitto = Mosquitto(
        folder,
        allow_anonymous=False,
        password_file=write_password_file(folder / "edge-gateway.passwd", passwords),
        acl_file=acl,
        run_as="root",
    )
    mosquitto.start()
    try:
        yield Broker(mosquitto, passwords)
    finally:
        mosquitto.stop()


def store_for(tmp_path: Path, broker: Broker) -> StoreKit:
    """The test store (tests/support/store.py) logging in as the broker's `gateway` user."""
    store = make_store(tmp_path / "store", broker.mosquitto.port, ttl_s=TTL_S)
    secret = store.workdir / "mqtt-password"
    secret.write_text(broker.passwords["gateway"])
    config = store.config_path.read_text()
    login = f'[mqtt]\nusername = "gateway"\npassword_file = "{secret}"\n'
    store.config_path.write_text(config.replace("[mqtt]\n", login, 1))
    return store


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    """Every image the example catalog names, as a real picture (a gradient) under its own name."""
    folder = tmp_path / "assets"
    catalog = tomllib.loads((REPO / "config/offers.example.toml").read_text())
    for offer in catalog["offers"]:
        name = offer.get("data", {}).get("image")
        if name:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            picture = Image.linear_gradient("L").resize((320, 200)).convert("RGB")
            picture.save(path)
    return folder


@pytest.fixture
async def served(assets: Path) -> AsyncIterator[str]:
    async with serve_static({"/player": REPO / "player", "/assets": assets}) as base:
        yield base


async def open_player(page: Page, base: str, broker: Broker, wall: float, **extra: object) -> None:
    """The player for ``DISPLAY`` with its credentials in the URL, the page's clock installed at ``wall``."""
    query = {
        "display": DISPLAY,
        "password": broker.passwords[DISPLAY],
        "store": STORE,
        "broker": f"ws://127.0.0.1:{broker.mosquitto.ws_port}",
        "assets": f"{base}/assets/",
        "brand": "Welcome to the cafe",
        "keepalive_s": 120,  # no keepalive timer falls due while a test moves the page's clock
        **extra,
    }
    await page.clock.install(time=wall)
    await page.goto(f"{base}/player/index.html?{urlencode(query)}")


async def stage(page: Page) -> dict[str, str]:
    return dict(await page.locator("#stage").evaluate("(el) => ({...el.dataset})"))


def decided(probe: Probe) -> list[dict[str, Any]]:
    return [m for m in probe.json_on(CONTENT) if m.get("decision_id")]


def distinct_pixels(png: bytes) -> int:
    with Image.open(io.BytesIO(png)) as shot:
        colors = shot.convert("RGB").getcolors(maxcolors=1 << 24)
    assert colors is not None
    return len(colors)


async def test_a_checkin_is_painted_acked_and_becomes_an_exposure(
    page: Page, broker: Broker, served: str, clock: ManualClock, tmp_path: Path
) -> None:
    store = store_for(tmp_path, broker)
    async with (
        running_gateway(store.settings(), clock=clock) as gateway,
        broker.client("observer", f"{ROOT}/#") as probe,
        broker.client("checkin") as app,
    ):
        await open_player(page, served, broker, clock.wall())
        await probe.wait_for(lambda: probe.on(AVAILABILITY)[-1:] == [b"online"])
        # The gateway's retained idle manifest: the fallback, not acked (it has no decision)
        await page.locator("#stage[data-fallback=true] .headline").wait_for()
        blank = distinct_pixels(await page.screenshot())

        await app.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await probe.wait_for(lambda: decided(probe))
        manifest = decided(probe)[-1]
        shown = page.locator(f"#stage[data-version='{manifest['version']}'] .headline")
        await shown.wait_for()
        assert await shown.text_content() == manifest["data"]["headline"]
        if manifest["data"].get("image"):
            assert (
                await page.locator("#stage img").evaluate("(img) => img.complete && img.naturalWidth") == 320
            )
        painted = distinct_pixels(await page.screenshot())
        assert painted > max(blank, 16), f"the screen looks blank: {painted} distinct colours"

        await probe.wait_for(lambda: probe.json_on(ACK))
        ack = probe.json_on(ACK)[-1]
        assert (ack["version"], ack["decision_id"], ack["status"]) == (
            manifest["version"],
            manifest["decision_id"],
            "shown",
        )
        shown_at = parse_iso_utc(ack["shown_at"])
        assert shown_at is not None
        assert parse_iso_utc(manifest["issued_at"]) <= shown_at  # the page's clock is the gateway's
        assert gateway.ledger is not None
        ledger = gateway.ledger
        await until(ledger.exposures, what="the exposure row")
        exposures = await ledger.exposures()
        assert [e["decision_id"] for e in exposures] == [manifest["decision_id"]]
        assert len(probe.json_on(ACK)) == 1  # one ack: the idle fallback was not acked
        assert await page.evaluate("window.player.stats.rejected") == {}


async def test_the_demos_page_server_gives_the_player_every_picture_the_catalog_names(
    page: Page, broker: Broker, clock: ManualClock, tmp_path: Path
) -> None:
    """`make demo` serves the player with a drawn picture per catalog image (the repository ships none): an
    offer with an image is painted with it and acked `shown`, with the player's default asset folder."""
    catalog = load_catalog(REPO / "config/offers.example.toml").offers
    pictures = demo_pictures(catalog)
    named = {str(offer.data["image"]) for offer in catalog if offer.data.get("image")}
    assert set(pictures) == named and len(named) >= 5
    store = store_for(tmp_path, broker)
    async with (
        serve_pages(REPO / "player", store=STORE, broker_ws="ws://unused", pictures=pictures) as pages,
        running_gateway(store.settings(), clock=clock),
        broker.client("observer", f"{ROOT}/#") as probe,
        broker.client("checkin") as app,
    ):
        query = {
            "display": DISPLAY,
            "password": broker.passwords[DISPLAY],
            "store": STORE,
            "broker": f"ws://127.0.0.1:{broker.mosquitto.ws_port}",
            "keepalive_s": 120,
        }  # no `assets`: the default, assets/ beside index.html, is where the demo serves them
        await page.clock.install(time=clock.wall())
        await page.goto(f"{pages.base}/player/index.html?{urlencode(query)}")
        await page.locator("#stage[data-fallback=true]").wait_for()
        await app.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await probe.wait_for(lambda: probe.json_on(ACK))
        manifest = decided(probe)[-1]
        assert manifest["data"].get("image"), "the chosen offer has no image: this test needs one"
        ack = probe.json_on(ACK)[-1]
        assert (ack["decision_id"], ack["status"]) == (manifest["decision_id"], "shown"), ack
        width = await page.locator("#stage img").evaluate("(img) => img.complete && img.naturalWidth")
        assert width == CARD_SIZE[0]
        # Every other picture too, and nothing else: a name the catalog does not use is a 404.
        for name in sorted(named):
            response = await page.request.get(f"{pages.base}/player/assets/{name}")
            assert (response.status, response.headers["content-type"]) == (200, "image/webp"), name
            with Image.open(io.BytesIO(await response.body())) as drawn:
                assert drawn.size == CARD_SIZE
        missing = await page.request.get(f"{pages.base}/player/assets/coffee/nothing.webp")
        assert missing.status == 404
        index = await page.request.get(f"{pages.base}/player/index.html")
        assert index.status == 200


async def test_the_player_returns_to_the_fallback_when_the_offer_expires_by_its_own_clock(
    page: Page, broker: Broker, served: str, clock: ManualClock, tmp_path: Path
) -> None:
    """The gateway's clock stands still (it never publishes the fallback itself); the page's clock moves past
    ``expires_at`` and the player goes back to the display's fallback on its own."""
    store = store_for(tmp_path, broker)
    async with (
        running_gateway(store.settings(), clock=clock),
        broker.client("observer", f"{ROOT}/#") as probe,
        broker.client("checkin") as app,
    ):
        await open_player(page, served, broker, clock.wall())
        await page.locator("#stage[data-fallback=true]").wait_for()
        await app.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await probe.wait_for(lambda: decided(probe))
        manifest = decided(probe)[-1]
        await page.locator(f"#stage[data-version='{manifest['version']}'][data-fallback=false]").wait_for()
        await probe.wait_for(lambda: probe.json_on(ACK))
        assert await stage(page) == {
            "version": str(manifest["version"]),
            "template": manifest["template"],
            "fallback": "false",
            "expired": "false",
        }

        await page.clock.fast_forward(int((TTL_S + 1) * 1000))
        await page.locator("#stage[data-expired=true]").wait_for()
        assert await page.locator("#stage .headline").text_content() == "Welcome to the cafe"
        assert await page.evaluate("window.player.stats.expired") == 1
        # Nothing came from the gateway meanwhile: the fallback is the player's own doing
        assert probe.json_on(CONTENT)[-1]["version"] == manifest["version"]


async def test_a_manifest_whose_version_is_not_greater_is_ignored(
    page: Page, broker: Broker, served: str, clock: ManualClock
) -> None:
    """The gateway's part played by hand (its broker user): a newer manifest, then an older and a repeat."""

    def manifest(version: int, headline: str) -> dict[str, Any]:
        return {
            "v": 1,
            "display": DISPLAY,
            "version": version,
            "decision_id": f"d{version}",
            "template": "offer-card",
            "data": {"headline": headline},
            "expires_at": None,
            "fallback": False,
        }

    async with broker.client("gateway", ACK) as gateway:
        await gateway.publish(CONTENT, manifest(1_000, "the current one"), retain=True)
        await open_player(page, served, broker, clock.wall())
        await page.locator("#stage[data-version='1000']").wait_for()
        await gateway.wait_for(lambda: len(gateway.json_on(ACK)) == 1)
        # The page's time stands still from here: no frame is painted, so nothing new may be acked yet
        await page.clock.pause_at(await page.evaluate("(Date.now() + 1000) / 1000"))
        await gateway.publish(CONTENT, manifest(999, "an older one"))
        await gateway.publish(CONTENT, manifest(1_000, "the same version again"))
        await gateway.publish(CONTENT, b"{not json")
        await gateway.publish(CONTENT, manifest(1_001, "the next one"))  # the sentinel: in order, after them
        await page.locator("#stage[data-version='1001']").wait_for()
        assert await page.locator("#stage .headline").text_content() == "the next one"
        stats = await page.evaluate("window.player.stats")
        assert (stats["ignored"], stats["rejected"]) == (2, {"not_json": 1})
        assert stats["acks"] == 1  # 1001 is in the DOM, but not painted yet: not acked
        await page.clock.run_for(100)  # frames go by
        await gateway.wait_for(lambda: len(gateway.json_on(ACK)) == 2)
        assert [a["decision_id"] for a in gateway.json_on(ACK)] == ["d1000", "d1001"]
        assert await page.evaluate("document.body.innerHTML.includes('older')") is False


async def test_an_image_that_cannot_load_is_acked_failed_and_never_shown(
    page: Page, broker: Broker, served: str, clock: ManualClock, tmp_path: Path
) -> None:
    store = store_for(tmp_path, broker)

    async def refuse(route: Route) -> None:
        await route.fulfill(status=404, body="gone")

    async with (
        running_gateway(store.settings(), clock=clock) as gateway,
        broker.client("observer", f"{ROOT}/#") as probe,
        broker.client("checkin") as app,
    ):
        await page.route("**/assets/**", refuse)
        await open_player(page, served, broker, clock.wall())
        await page.locator("#stage[data-fallback=true]").wait_for()
        idle = await stage(page)
        await app.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await probe.wait_for(lambda: probe.json_on(ACK))
        manifest = decided(probe)[-1]
        assert manifest["data"].get("image"), "the chosen offer has no image: this test needs one"
        ack = probe.json_on(ACK)[-1]
        assert (ack["decision_id"], ack["status"]) == (manifest["decision_id"], "failed")
        assert ack["reason"] == f"image did not load: {manifest['data']['image']}"
        assert "shown_at" not in ack
        generation = gateway.generation
        assert generation is not None and gateway.ledger is not None
        await until(lambda: generation.stats.acks_failed_by_display[DISPLAY] == 1)
        assert await gateway.ledger.exposures() == []
        assert await stage(page) == idle  # the screen kept what it had


def start_gateway(store: StoreKit) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        gateway_command("run", "--config", str(store.config_path)),
        cwd=store.workdir,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_the_gateways_lwt_shows_offline_and_its_return_clears_it(
    page: Page, broker: Broker, served: str, tmp_path: Path, test_timeline: PinnedClock
) -> None:
    """A gateway process killed (SIGKILL: the broker publishes its LWT), then started again; and the broker
    itself restarted: the player reconnects by itself and says so meanwhile."""
    store = store_for(tmp_path, broker)
    status = page.locator("#status")
    async with broker.client("observer", STATUS, AVAILABILITY) as probe:
        process = start_gateway(store)
        try:
            await probe.wait_for(
                lambda: probe.json_on(STATUS)[-1:] and probe.json_on(STATUS)[-1]["state"] == "online", 20
            )
            await open_player(page, served, broker, test_timeline.wall())
            await page.locator("#stage[data-fallback=true]").wait_for()
            assert await status.is_hidden()

            process.kill()
            await asyncio.to_thread(process.wait, 10)
            await page.locator("#status[data-state=offline]").wait_for()
            assert probe.json_on(STATUS)[-1]["state"] == "offline"  # the LWT, as the player read it
            assert await status.text_content() == "Store system offline: showing what we last had"
            assert await page.locator("#stage .headline").text_content() == "Welcome to the cafe"

            process = start_gateway(store)
            await status.wait_for(state="hidden")
            assert probe.json_on(STATUS)[-1]["state"] == "online"
        finally:
            process.kill()
            process.wait(10)

    # The broker goes away and comes back (same ports): the player reconnects by itself, saying so meanwhile
    connections = await page.evaluate("window.player.stats.connects")
    broker.mosquitto.restart()
    await page.locator("#status[data-state=reconnecting]").wait_for()
    await page.wait_for_function(f"window.player.stats.connects > {connections}")
    assert await page.locator("#status").get_attribute("data-state") in {"offline", "ok"}


async def test_templates_a_kiosks_ui_and_hostile_text(
    page: Page, broker: Broker, served: str, clock: ManualClock
) -> None:
    """Each template the gateway sends, a kiosk's ui preferences for as long as their manifest shows, and
    text that looks like HTML shown as text (the gateway's part played by hand, as above)."""
    hostile = '<img src=x onerror="window.pwned=1">Coffee & <b>cake</b>'
    manifests: list[dict[str, Any]] = [
        {
            "template": "offer-card",
            "data": {"headline": hostile, "until": "11:00"},
            "decision_id": "d1",
            "ui": {"language": "fr", "text_scale": 1.5, "contrast": "high", "reduced_motion": "on"},
        },
        {"template": "pickup", "data": {"orders": [{"reference": "A-17", "counter": "2"}, "junk"]}},
        {
            "template": "my-data",
            "data": {
                "consents": [{"purpose": "measurement", "granted": True}],
                "decisions": 3,
                "retention_days": {"decisions": 90},
            },
        },
        {
            "template": "loop",
            "data": {"items": [{"headline": "one"}, {"headline": "two"}], "interval_s": 5},
            "fallback": True,
        },
    ]
    async with broker.client("gateway") as gateway:
        await open_player(page, served, broker, clock.wall())
        await page.wait_for_function("window.player.stats.connects > 0")
        html = page.locator("html")

        await gateway.publish(CONTENT, {"v": 1, "version": 1, **manifests[0]})
        await page.locator("#stage[data-version='1']").wait_for()
        assert await page.locator("#stage .headline").text_content() == hostile
        assert await page.locator("#stage img").count() == 0
        assert await page.locator("#stage .until").text_content() == "jusqu'à 11:00"
        assert (await html.get_attribute("lang"), await html.get_attribute("data-contrast")) == ("fr", "high")
        assert await html.get_attribute("data-motion") == "reduced"
        assert await html.evaluate("(el) => el.style.getPropertyValue('--text-scale')") == "1.5"

        await gateway.publish(CONTENT, {"v": 1, "version": 2, **manifests[1]})
        await page.locator("#stage[data-version='2'][data-template=pickup]").wait_for()
        assert await page.locator("#stage .order").all_text_contents() == ["A-17counter 2"]
        assert (await html.get_attribute("lang"), await html.get_attribute("data-contrast")) == (
            "en",
            "normal",
        )

        await gateway.publish(CONTENT, {"v": 1, "version": 3, **manifests[2]})
        await page.locator("#stage[data-version='3'][data-template=my-data]").wait_for()
        assert (
            await page.locator("#stage [data-purpose=measurement]").text_content() == "measurement: granted"
        )
        assert await page.locator("#stage [data-count=decisions]").text_content() == "3"
        assert await page.locator("#stage .retention").text_content() == "decisions: deleted after 90 days"

        await gateway.publish(CONTENT, {"v": 1, "version": 4, **manifests[3]})
        await page.locator("#stage[data-version='4'][data-template=loop]").wait_for()
        slides = page.locator("#stage .slide")
        assert [await s.is_visible() for s in await slides.all()] == [True, False]
        await page.clock.fast_forward(5_000)
        await page.locator("#stage .loop[data-slide='1']").wait_for()
        assert [await s.is_visible() for s in await slides.all()] == [False, True]
        assert await page.evaluate("window.pwned") is None


async def test_settings_from_a_config_file_and_none_at_all(
    page: Page, broker: Broker, clock: ManualClock, tmp_path: Path
) -> None:
    """A signage box keeps its settings in a file (no password in a URL); without any, the page says so."""
    folder = tmp_path / "box"
    folder.mkdir()
    settings = {
        "display": DISPLAY,
        "password": broker.passwords[DISPLAY],
        "store": STORE,
        "broker": f"ws://127.0.0.1:{broker.mosquitto.ws_port}",
        "playlists": {"cafe": [{"headline": "from the box's own playlist"}]},
    }
    (folder / "box.json").write_text(json.dumps(settings))
    async with (
        serve_static({"/player": REPO / "player", "/box": folder}) as base,
        broker.client("gateway") as gateway,
    ):
        idle = {"v": 1, "version": 5, "template": "loop", "data": {"playlist": "cafe"}, "fallback": True}
        await gateway.publish(CONTENT, idle, retain=True)
        await page.clock.install(time=clock.wall())
        await page.goto(f"{base}/player/index.html?config=/box/box.json")
        await page.locator("#stage[data-version='5'] .headline").wait_for()
        assert await page.locator("#stage .headline").text_content() == "from the box's own playlist"
        assert "password" not in page.url

        await page.goto(f"{base}/player/index.html")  # no display, and no player/config.json
        await page.locator("#status[data-state=misconfigured]").wait_for()
        assert "config.json" in (await page.locator("#status").text_content() or "")
