"""The browser pages of the demo (player/: the display player, the kiosk, the staff tablet) served over HTTP on
a free loopback port, and their URLs for the demo's store (docs/player.md). Demo only: a store serves these
files from wherever its screens load them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

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


@contextlib.asynccontextmanager
async def serve_pages(player_dir: Path, *, store: str, broker_ws: str) -> AsyncIterator[DemoPages]:
    """``player_dir`` under ``/player/`` on 127.0.0.1 (a free port) while the block runs."""
    app = web.Application()
    app.router.add_static("/player/", player_dir)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield DemoPages(f"http://127.0.0.1:{port}", store, broker_ws)
    finally:
        await runner.cleanup()
