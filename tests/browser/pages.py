"""What the kiosk and staff browser tests share: the store's broker as shipped (its ACL, a password per user,
its websockets listener), the gateway logged in to it, test clients as given users, the pages' URLs.

The browser itself is tests/support/browser.py's (``page``: Debian's Chromium through Playwright).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from PIL import Image
from playwright.async_api import Page

from tests.ops.clients import REPO, Client, make_passwords, write_password_file
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.store import STORE, StoreKit

PLAYER = REPO / "player"
ACL = REPO / "config" / "mosquitto" / "edge-gateway.acl"
# The test's own observer, appended to a copy of the shipped ACL: it reads everything (and writes nothing).
OBSERVER_RULES = "\n# test only\nuser observer\ntopic read #\n"


class StoreBroker(Mosquitto):
    """mosquitto with the shipped ACL and a password per user, on TCP and on its websockets listener."""

    passwords: dict[str, str]


def store_broker(tmp_path: Path, users: list[str]) -> Iterator[StoreBroker]:
    """The store's broker as shipped (its ACL, no anonymous clients) for ``users`` and the observer."""
    folder = tmp_path / "broker"
    folder.mkdir(parents=True)
    acl = folder / "edge-gateway.acl"
    acl.write_text(ACL.read_text() + OBSERVER_RULES)
    passwords = make_passwords([*users, "observer"])
    broker = StoreBroker(
        folder,
        allow_anonymous=False,
        password_file=write_password_file(folder / "edge-gateway.passwd", passwords),
        acl_file=acl,
        run_as="root",
    )
    broker.passwords = passwords
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def gateway_login(store: StoreKit, broker: StoreBroker) -> None:
    """The store's gateway logs in as the broker's `gateway` user (its password in a file, as installed)."""
    secret = store.workdir / "mqtt-password"
    secret.write_text(broker.passwords["gateway"])
    config = store.config_path.read_text()
    store.config_path.write_text(
        config.replace("[mqtt]\n", f'[mqtt]\nusername = "gateway"\npassword_file = "{secret}"\n', 1)
    )


def client(broker: StoreBroker, user: str, *filters: str) -> Client:
    """An MQTT client of the test logged in as ``user`` (``observer`` reads everything)."""
    return Client(broker.port, user, broker.passwords[user], *filters)


def page_url(base_url: str, page: str, broker: StoreBroker, user: str, **query: str) -> str:
    """``/player/{page}`` with the store, the websockets URL and ``user``'s password in its query."""
    login = {"password": broker.passwords[user], "store": STORE, "broker": f"ws://127.0.0.1:{broker.ws_port}"}
    return f"{base_url}/player/{page}?{urlencode({**query, **login})}"


def catalog_assets(folder: Path) -> Path:
    """Every image the example catalog names, as a real picture (a gradient) under its own name."""
    catalog = tomllib.loads((REPO / "config" / "offers.example.toml").read_text())
    for offer in catalog["offers"]:
        name = offer.get("data", {}).get("image")
        if name:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.linear_gradient("L").resize((320, 200)).convert("RGB").save(path)
    return folder


async def open_page(page: Page, url: str) -> None:
    """``url`` in ``page`` with the page's clock at the test's timeline (the gateway's clock): expiry and
    ``shown_at`` are judged on one timeline, and nothing in the test waits for real time to pass."""
    await page.clock.install(time=timeline.now())
    await page.goto(url)
