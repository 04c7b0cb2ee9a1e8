"""The reference profile store, running for real on a loopback port, for the tests (gateway tests included).

``running_profile_store(tmp_path)`` yields a ``ProfileStoreKit``: its base URL and admin token, admin helpers
(stores, shoppers, consents, keys, offers, inventory, erasure, what arrived), ``stop()``/``start()`` on the
same port and database (the cloud going down and coming back), and ``faults``: a switch that makes the store
API answer badly on demand. The switch is a middleware added here; the production server has none.

A store holds only its own shoppers (docs/profile-store.md): ``put_shopper`` makes the first store registered
through the kit the shopper's home store unless told otherwise, so a test with one store sees its shoppers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from profilestore.clock import Clock
from profilestore.const import DEFAULT_MEMBER_DAYS
from profilestore.http import Handler
from profilestore.server import create_app, run_app
from profilestore.storage import open_storage

FaultMode = Literal["ok", "http500", "bad_json", "truncated", "slow", "close"]
FAULT_MODES: tuple[FaultMode, ...] = ("ok", "http500", "bad_json", "truncated", "slow", "close")
# The PostgreSQL server the tests and benches use: only to create databases with random names (dropped after).
PG_ADMIN_URL = os.environ.get("EDGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A stopping test server cancels what is still running after this long ("the cloud went down").
STOP_GRACE_S = 0.2
_STORES_PATH = "/admin/v1/stores/"


class Home(Enum):
    """``put_shopper``'s ``home_store`` besides a store id or None (no home store)."""

    FIRST = "first"  # the first store registered through the kit (none yet: the field is left out)
    KEEP = "keep"  # the field is left out: the home store stays as it is


@dataclass
class FaultSwitch:
    """How the store answers requests whose path starts with ``prefix`` (the store API by default).

    - ``ok``: normally
    - ``http500``: a 500 with a JSON error body
    - ``bad_json``: a 200 whose body is not JSON
    - ``truncated``: a 200 whose Content-Length promises more than is sent, then the connection closes
    - ``slow``: waits ``delay_s`` seconds, then answers normally
    - ``close``: drops the connection without an answer

    ``when="after"`` applies the fault after the request was processed (a push is stored, the answer lost);
    ``times`` limits the fault to the next N matching requests, then the switch goes back to ``ok``.
    """

    mode: FaultMode = "ok"
    delay_s: float = 2.0
    when: Literal["before", "after"] = "before"
    prefix: str = "/v1/"
    times: int | None = None
    hits: int = 0  # matching requests answered with a fault so far
    seen: int = 0  # matching requests seen so far, faulty or not

    def set(
        self,
        mode: FaultMode,
        *,
        delay_s: float | None = None,
        when: Literal["before", "after"] = "before",
        times: int | None = None,
        prefix: str = "/v1/",
    ) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        self.mode = mode
        self.when = when
        self.times = times
        self.prefix = prefix
        if delay_s is not None:
            self.delay_s = delay_s

    def reset(self) -> None:
        self.set("ok")

    def _take(self, path: str) -> FaultMode:
        if not path.startswith(self.prefix):
            return "ok"
        self.seen += 1
        mode = self.mode
        if mode == "ok":
            return mode
        self.hits += 1
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.mode, self.times = "ok", None
        return mode

    async def _answer(self, mode: FaultMode, request: web.Request) -> web.StreamResponse:
        if mode == "http500":
            return web.json_response({"error": "internal", "detail": "injected fault"}, status=500)
        if mode == "bad_json":
            return web.Response(body=b'{"changes": [{"seq": ', content_type="application/json")
        if mode == "truncated":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.content_length = 4096
            await response.prepare(request)
            await response.write(b'{"changes": [')
            if request.transport is not None:
                request.transport.close()
            return response
        # "close"
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        mode = self._take(request.path)
        if mode == "ok":
            return await handler(request)
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
            return await handler(request)
        if self.when == "after":
            await handler(request)
        return await self._answer(mode, request)


class ProfileStoreKit:
    """A running reference store plus admin helpers; see the module docstring."""

    def __init__(
        self,
        db_url: str,
        admin_token: str,
        *,
        host: str = "127.0.0.1",
        clock: Clock | None = None,
        member_days: float = DEFAULT_MEMBER_DAYS,
    ) -> None:
        self.db_url = db_url
        self.admin_token = admin_token
        self.host = host
        self.port = 0
        self.base_url = ""
        self.faults = FaultSwitch()
        self._clock = clock
        self._server: AsyncExitStack | None = None
        self._session: aiohttp.ClientSession | None = None
        self.member_days = member_days  # the server's --member-days
        self.stores: list[str] = []  # registered through the kit (or its admin calls), in order

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Start serving (again): the same port (once one was chosen) and the same database."""
        if self._server is not None:
            return
        stack = AsyncExitStack()
        try:
            storage = await stack.enter_async_context(open_storage(self.db_url))
            app = create_app(
                storage,
                admin_token=self.admin_token,
                clock=self._clock,
                middlewares=[self.faults.middleware],
                member_days=self.member_days,
            )
            self.base_url = await stack.enter_async_context(
                run_app(app, host=self.host, port=self.port, shutdown_timeout=STOP_GRACE_S)
            )
        except BaseException:
            await stack.aclose()
            raise
        self.port = int(self.base_url.rsplit(":", 1)[1])
        self._server = stack

    async def stop(self) -> None:
        """Stop serving: connections are refused until ``start()``."""
        server, self._server = self._server, None
        if server is not None:
            await server.aclose()

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----- raw HTTP -----
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def get_text(self, path: str) -> tuple[int, str]:
        """An unauthenticated GET (the server's own documents): status and body text."""
        async with self._client().get(self.base_url + path) as response:
            return response.status, await response.text()

    async def admin(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        """Call the admin API; the parsed answer (AssertionError if the status is not ``expect``)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with self._client().request(
            method, self.base_url + path, json=body, headers=headers
        ) as response:
            answer = await response.json()
            assert response.status == expect, f"{method} {path}: {response.status} {answer}"
        store = path.removeprefix(_STORES_PATH)
        registered = method == "PUT" and expect == 200 and path.startswith(_STORES_PATH) and "/" not in store
        if registered and store not in self.stores:
            self.stores.append(store)
        return answer

    async def put_weather(self, store_id: str, **weather: Any) -> dict[str, Any]:
        """A store's weather (``temp_c``, ``precipitation``, ``forecast_max_c``, ``observed_at``)."""
        return dict(await self.admin("PUT", f"{_STORES_PATH}{store_id}/weather", weather))

    async def store_call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        """Call the store API with ``token``: (status, parsed answer)."""
        headers = {"Authorization": f"Bearer {token}"}
        async with self._client().request(
            method, self.base_url + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    # ----- admin helpers -----
    async def add_store(self, store_id: str) -> str:
        """Register ``store_id`` with a fresh token; returns the token (its bearer secret)."""
        token = secrets.token_urlsafe(32)
        await self.admin("PUT", f"/admin/v1/stores/{store_id}", {"token": token})
        return token

    async def put_shopper(
        self, shopper_id: str, profile: dict[str, Any], *, home_store: str | Home | None = Home.FIRST
    ) -> dict[str, Any]:
        """Set the profile, and the home store: the kit's first store by default (see ``Home``)."""
        if home_store is Home.FIRST:
            home_store = self.stores[0] if self.stores else Home.KEEP
        body: dict[str, Any] = {"profile": profile}
        if home_store is not Home.KEEP:
            body["home_store"] = home_store
        return dict(await self.admin("PUT", f"/admin/v1/shoppers/{shopper_id}", body))

    async def put_consent(
        self, shopper_id: str, purpose: str, granted: bool, at: str | None = None, source: str = "cloud"
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"granted": granted, "source": source}
        if at is not None:
            body["at"] = at
        return dict(await self.admin("PUT", f"/admin/v1/shoppers/{shopper_id}/consents/{purpose}", body))

    async def put_eid_key(
        self, shopper_id: str, key: bytes, rotation_exponent: int, clock_offset_s: int = 0
    ) -> dict[str, Any]:
        body = {
            "identity_key": base64.b64encode(key).decode("ascii"),
            "rotation_exponent": rotation_exponent,
            "clock_offset_s": clock_offset_s,
        }
        return dict(await self.admin("PUT", f"/admin/v1/shoppers/{shopper_id}/eid-key", body))

    async def add_shopper(
        self,
        shopper_id: str,
        profile: dict[str, Any],
        purposes: Sequence[str],
        eid_key: bytes | None = None,
        *,
        home_store: str | Home | None = Home.FIRST,
    ) -> None:
        """A shopper with ``profile``, ``purposes`` granted from the app, and an EID key if given."""
        await self.put_shopper(shopper_id, profile, home_store=home_store)
        for purpose in purposes:
            await self.put_consent(shopper_id, purpose, True, source="app")
        if eid_key is not None:
            await self.put_eid_key(shopper_id, eid_key, 10)

    async def delete_eid_key(self, shopper_id: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/shoppers/{shopper_id}/eid-key"))

    async def put_token_key(self, kid: str, pem: str | bytes) -> dict[str, Any]:
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        return dict(await self.admin("PUT", f"/admin/v1/token-keys/{kid}", {"public_key_pem": text}))

    async def delete_token_key(self, kid: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/token-keys/{kid}"))

    async def put_offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.admin("PUT", f"/admin/v1/offers/{offer['id']}", offer))

    async def delete_offer(self, offer_id: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/offers/{offer_id}"))

    async def put_inventory(
        self, offer_id: str, available: bool, quantity: int | None = None
    ) -> dict[str, Any]:
        body = {"available": available, "quantity": quantity}
        return dict(await self.admin("PUT", f"/admin/v1/inventory/{offer_id}", body))

    async def delete_inventory(self, offer_id: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/inventory/{offer_id}"))

    async def put_order(
        self, order_id: str, store_id: str, shopper_id: str, reference: str, counter: str
    ) -> dict[str, Any]:
        """An online order ready for pickup at ``store_id`` (only that store pulls it)."""
        body = {"store_id": store_id, "shopper_id": shopper_id, "reference": reference, "counter": counter}
        return dict(await self.admin("PUT", f"/admin/v1/orders/{order_id}", body))

    async def delete_order(self, order_id: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/orders/{order_id}"))

    async def erase(self, shopper_id: str) -> dict[str, Any]:
        return dict(await self.admin("DELETE", f"/admin/v1/shoppers/{shopper_id}"))

    async def pull_all(
        self, store_id: str, token: str, since: str = "", *, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str]:
        """Every change ``store_id`` pulls after ``since`` (page after page): the changes and the last cursor."""
        changes: list[dict[str, Any]] = []
        while True:
            query = f"?since={since}&limit={limit}"
            status, page = await self.store_call("GET", f"/v1/stores/{store_id}/changes{query}", token)
            assert status == 200, page
            changes += page["changes"]
            since = page["cursor"]
            if not page["more"]:
                return changes, since

    async def events(self, store_id: str | None = None) -> list[dict[str, Any]]:
        """Every event received (from ``store_id``, or from every store), in receive order."""
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = f"?after={cursor}&limit=1000" + (f"&store_id={store_id}" if store_id else "")
            page = await self.admin("GET", f"/admin/v1/events{query}")
            found += page["events"]
            cursor = page["cursor"]
            if not page["more"]:
                return found

    async def stats(self) -> dict[str, Any]:
        return dict(await self.admin("GET", "/admin/v1/stats"))


@asynccontextmanager
async def running_profile_store(
    tmp_path: Path,
    *,
    db_url: str | None = None,
    admin_token: str | None = None,
    clock: Clock | None = None,
    member_days: float = DEFAULT_MEMBER_DAYS,
) -> AsyncIterator[ProfileStoreKit]:
    """A profile store on a free loopback port over ``db_url`` (default: a SQLite file in ``tmp_path``)."""
    url = db_url or f"sqlite://{tmp_path / 'profile-store.db'}"
    kit = ProfileStoreKit(url, admin_token or secrets.token_urlsafe(24), clock=clock, member_days=member_days)
    await kit.start()
    try:
        yield kit
    finally:
        await kit.close()


# ----- PostgreSQL: scratch databases, and what a plan read -----
def database_url(url: str, name: str, query: str = "") -> str:
    """``url`` naming database ``name`` instead (and ``query``, e.g. ``search_path=...``)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", query, ""))


async def create_database(prefix: str = "edge_profilestore") -> str:
    """A new database on ``PG_ADMIN_URL``'s server, named ``prefix`` and random hex; its name."""
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        name = f"{prefix}_{secrets.token_hex(6)}"
        await conn.execute(f'CREATE DATABASE "{name}"')
        return name
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def plan_reads(node: dict[str, Any], table: str = "changes") -> tuple[int, int, frozenset[str]]:
    """Of an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan node: (rows read from ``table``, of which read and thrown
    away by a filter, the indexes used), over the node and everything under it."""
    read = removed = 0
    indexes = {str(node["Index Name"])} if "Index Name" in node else set()
    if node.get("Relation Name") == table:
        removed = int(node.get("Rows Removed by Filter", 0)) + int(
            node.get("Rows Removed by Index Recheck", 0)
        )
        read = int(node["Actual Rows"]) + removed
    for child in node.get("Plans", []):
        more = plan_reads(child, table)
        read, removed, indexes = read + more[0], removed + more[1], indexes | more[2]
    return read, removed, frozenset(indexes)
