"""The reference profile store's HTTP server: the application, and running it on the current event loop."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import yaml
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from profilestore.admin_api import AdminApi
from profilestore.auth import AdminAuth
from profilestore.clock import Clock, SystemClock
from profilestore.const import DEFAULT_MEMBER_DAYS, MAX_WIRE_BYTES, SHUTDOWN_TIMEOUT_S
from profilestore.cross_api import CrossChannelApi
from profilestore.http import json_errors, json_response
from profilestore.storage import Storage, open_storage
from profilestore.store_api import StoreApi
from storecontract.spec import openapi_text

_LOGGER = logging.getLogger(__name__)


def create_app(
    storage: Storage,
    *,
    admin_token: str,
    clock: Clock | None = None,
    middlewares: Sequence[Middleware] = (),
    member_days: float = DEFAULT_MEMBER_DAYS,
) -> web.Application:
    """The store and admin APIs of docs/sync-openapi.yaml over ``storage`` (which the caller opens and closes).

    ``member_days``: how long a store holds a shopper it saw or fetched (docs/profile-store.md).

    Serve it with ``run_app`` (or any runner made with ``auto_decompress=False``): request bodies are
    decompressed by the application itself, with a cap, and must reach it as sent. ``middlewares`` run
    outside the application's own (first = outermost).
    """
    clock = clock or SystemClock()

    async def healthz(request: web.Request) -> web.Response:
        del request
        await storage.ping()
        return json_response({"status": "ok"})

    spec_yaml = openapi_text()
    spec_json = json.dumps(yaml.safe_load(spec_yaml), separators=(",", ":"))

    async def openapi_yaml(request: web.Request) -> web.Response:
        del request
        return web.Response(text=spec_yaml, content_type="application/yaml")

    async def openapi_json(request: web.Request) -> web.Response:
        del request
        return web.Response(text=spec_json, content_type="application/json")

    app = web.Application(
        client_max_size=MAX_WIRE_BYTES,
        middlewares=[*middlewares, json_errors],
    )
    app.router.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/openapi.yaml", openapi_yaml),
            web.get("/openapi.json", openapi_json),
        ]
    )
    app.router.add_routes(StoreApi(storage, clock, member_days=member_days).routes())
    app.router.add_routes(AdminApi(storage, AdminAuth(admin_token), clock).routes())
    app.router.add_routes(CrossChannelApi(storage, AdminAuth(admin_token), clock).routes())
    return app


def _base_url(address: object) -> str:
    host, port = address[0], address[1]  # type: ignore[index]
    return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


# Path segments that name a shopper (the store API's profile fetch, the admin API's shopper routes).
_SHOPPER_IN_PATH: Final = re.compile(r"(/profiles/|/shoppers/)[^/?]+")


class AccessLogger(AbstractAccessLogger):
    """One line per request without personal data: the method, the path with shopper ids replaced by
    ``{shopper}`` and without its query, the status, the time taken (docs/profile-store.md "Access log")."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = _SHOPPER_IN_PATH.sub(r"\1{shopper}", request.path)
        self.logger.info("%s %s %s %.1f ms", request.method, path, response.status, time * 1000)


@asynccontextmanager
async def run_app(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT_S,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block exits; yields the base URL.

    On exit, requests in flight get ``shutdown_timeout`` seconds to finish before they are cancelled.
    """
    runner = web.AppRunner(
        app,
        auto_decompress=False,  # the application inflates bodies itself, with a cap (gzip bombs)
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        access_log_class=AccessLogger,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield _base_url(runner.addresses[0])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve(
    url: str,
    *,
    admin_token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    member_days: float = DEFAULT_MEMBER_DAYS,
) -> AsyncIterator[str]:
    """Open the database at ``url``, serve the profile store on the running loop; yields the base URL."""
    async with (
        open_storage(url) as storage,
        run_app(
            create_app(storage, admin_token=admin_token, member_days=member_days),
            host=host,
            port=port,
            access_log=access_log,
        ) as base_url,
    ):
        _LOGGER.info("profile store listening on %s", base_url)
        yield base_url
