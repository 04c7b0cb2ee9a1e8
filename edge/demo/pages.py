"""The browser pages of the demo (player/: the display player, the kiosk, the staff tablet) served over HTTP on
a free loopback port, and their URLs for the demo's store (docs/player.md). Demo only: a store serves these
files from wherever its screens load them.

The example catalog names product pictures (``coffee/flatwhite.webp``) that a retailer supplies and this
repository does not ship, so the demo draws one per name the catalog uses: a WebP card with the offer's
headline, made with OpenCV once per name and kept in memory, served under ``/player/assets/`` where the
player resolves relative image names. Any other name is 404, as a missing picture would be.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np
from aiohttp import web

from edge.demo.broker import free_loopback_port


@dataclass(frozen=True, slots=True)
class DemoPages:
    """Where the pages are (``base``) and the demo store they talk to (its id, its websockets broker)."""

    base: str
    store: str
    broker_ws: str

    def url(self, page: str, **query: str) -> str:
        return (
            f"{self.base}/player/{page}?{urlencode({**query, 'store': self.store, 'broker': self.broker_ws})}"
        )

    def player(self, display: str) -> str:
        return self.url("index.html", display=display)

    def kiosk(self, display: str) -> str:
        return self.url("kiosk.html", display=display)

    def staff(self, team: str, devices: Iterable[tuple[str, str]]) -> str:
        return self.url("staff.html", team=team, devices=",".join(f"{d}:{c}" for d, c in devices))


CARD_SIZE = (480, 320)  # width, height: the offer card's picture box scales it


def picture(name: str, caption: str) -> bytes:
    """A WebP stand-in for a product picture: a colour of its own per name, the caption across it."""
    width, height = CARD_SIZE
    seed = hashlib.sha256(name.encode()).digest()
    colour = tuple(int(40 + byte % 110) for byte in seed[:3])
    card = np.full((height, width, 3), colour, np.uint8)
    cv2.rectangle(card, (12, 12), (width - 13, height - 13), (255, 255, 255), 3)
    words, lines, line = caption.split(), [], ""
    for word in words:  # wrap at ~22 characters: the Hershey font has no layout of its own
        if line and len(line) + 1 + len(word) > 22:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    top = height // 2 - 22 * (len(lines) - 1)
    for number, text in enumerate(lines[:4]):
        cv2.putText(card, text, (32, top + 44 * number), cv2.FONT_HERSHEY_DUPLEX, 1.0, (255, 255, 255), 2,
                    cv2.LINE_AA)  # fmt: skip
    cv2.putText(card, "demo picture", (32, height - 32), cv2.FONT_HERSHEY_PLAIN, 1.2, (255, 255, 255), 1)
    ok, encoded = cv2.imencode(".webp", card, [cv2.IMWRITE_WEBP_QUALITY, 80])
    if not ok:
        msg = f"OpenCV could not encode {name} as WebP"
        raise RuntimeError(msg)
    return encoded.tobytes()


@contextlib.asynccontextmanager
async def serve_pages(
    player_dir: Path, *, store: str, broker_ws: str, pictures: Mapping[str, str] | None = None
) -> AsyncIterator[DemoPages]:
    """``player_dir`` under ``/player/`` on 127.0.0.1 (a free port) while the block runs, with a drawn
    picture for every ``pictures`` name (name -> caption) under ``/player/assets/``."""
    captions = dict(pictures or {})
    drawn: dict[str, bytes] = {}

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in captions:
            raise web.HTTPNotFound
        if name not in drawn:
            drawn[name] = picture(name, captions[name])
        return web.Response(body=drawn[name], content_type="image/webp")

    app = web.Application()
    # Before the static folder, whose prefix would otherwise answer 404 for these names.
    app.router.add_get("/player/assets/{name:.+}", asset)
    app.router.add_static("/player/", player_dir)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield DemoPages(f"http://127.0.0.1:{port}", store, broker_ws)
    finally:
        await runner.cleanup()
