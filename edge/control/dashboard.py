"""The store dashboard over HTTP (docs/dashboard.md): one page, its JSON snapshot and a live server-sent event
stream of it, served by the gateway on ``[dashboard] bind:port``.

The snapshot (edge/control/dashboard_view.py) is an allow-list: no shopper id can reach this server. Access:

* on a loopback address with no password configured, no authentication, but only for a ``Host`` header that
  names this machine (a web page the browser loaded elsewhere cannot read the dashboard by DNS rebinding);
* with a password (required off loopback, by the schema): HTTP basic authentication, user and password
  compared in constant time; each client address may fail ``failures_per_minute`` times a minute, then it is
  answered 429 without a look at what it sends until its minute is over.

aiohttp is imported at ``start``: a gateway without a dashboard never loads it for this.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from edge.clock import Clock
from edge.config.dashboard import DashboardSettings, is_loopback_bind
from edge.control.http import serve

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]

# The page and its two assets, by the name they are served under: nothing else is read from disk.
STATIC: Final = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
REALM: Final = 'Basic realm="store dashboard", charset="UTF-8"'
THROTTLE_WINDOW_S: Final = 60.0
# Decisions come in bursts (a check-in decides for every screen of its zone; a busy store makes 200 a second):
# one snapshot for all of them after this long, not one per decision per open page.
COALESCE_S: Final = 0.25
# Client addresses whose failures are remembered; the oldest is forgotten past this (memory stays bounded).
THROTTLE_ADDRESSES: Final = 1024
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class DashboardError(RuntimeError):
    """The dashboard cannot start as configured (off loopback with no readable password)."""


class FailureThrottle:
    """Failed logins per client address: ``limit`` in a window of ``window_s``, then refused until it ends."""

    def __init__(self, clock: Clock, limit: int, window_s: float = THROTTLE_WINDOW_S) -> None:
        self._clock = clock
        self._limit = limit
        self._window_s = window_s
        # address -> (window start, failures in it), oldest first
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _current(self, address: str) -> tuple[float, int] | None:
        entry = self._failures.get(address)
        if entry is not None and self._clock.monotonic() - entry[0] >= self._window_s:
            del self._failures[address]
            return None
        return entry

    def retry_after_s(self, address: str) -> float | None:
        """Seconds until ``address`` may try again; None: it may try now."""
        entry = self._current(address)
        if entry is None or entry[1] < self._limit:
            return None
        return max(0.0, entry[0] + self._window_s - self._clock.monotonic())

    def failed(self, address: str) -> None:
        entry = self._current(address)
        start, count = entry if entry is not None else (self._clock.monotonic(), 0)
        self._failures[address] = (start, count + 1)
        self._failures.move_to_end(address)
        while len(self._failures) > THROTTLE_ADDRESSES:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)


def _credentials(header: str) -> tuple[bytes, bytes] | None:
    """(user, password) of a basic ``Authorization`` header; None if it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def _host_is_local(host: str | None) -> bool:
    if not host:
        return False
    name = host
    if name.startswith("["):  # [::1]:9180
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:  # 127.0.0.1:9180, localhost:9180
        name = name.partition(":")[0]
    return is_loopback_bind(name)


class DashboardServer:
    """GET ``/`` (the page), ``/static/{name}``, ``/api/snapshot`` (JSON) and ``/api/events`` (SSE)."""

    def __init__(
        self,
        settings: DashboardSettings,
        *,
        password: str | None,
        snapshot: Snapshot,
        clock: Clock,
    ) -> None:
        if not is_loopback_bind(settings.bind) and not password:
            raise DashboardError(
                f"dashboard.bind {settings.bind!r} is not a loopback address and no password could be read "
                "(dashboard.password_file or password_env is empty)"
            )
        self.settings = settings
        self.host = settings.bind
        self.port = settings.port
        self._user = settings.user.encode()
        self._password = password.encode() if password else None
        self._snapshot = snapshot
        self._throttle = FailureThrottle(clock, settings.failures_per_minute)
        self.counters: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._assets: dict[str, bytes] = {}
        # Set when something changed, then replaced: the broadcaster waits on the one it saw last.
        self._changed = asyncio.Event()
        # The broadcaster's latest document, and the event it sets (then replaces) when there is a new one.
        self._latest = b""
        self._published = asyncio.Event()
        self._broadcaster: asyncio.Task[None] | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ----- lifecycle -----
    async def start(self) -> None:
        from aiohttp import web  # noqa: PLC0415 - loaded only when the dashboard is on

        if self._runner is not None:
            raise RuntimeError("dashboard already started")
        folder = resources.files("edge.control") / "dashboard"
        self._assets = {name: (folder / name).read_bytes() for name in STATIC}

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._json)
        app.router.add_get("/api/events", self._events)
        runner = await serve(app, self.host, self.port)
        self._runner = runner
        self._broadcaster = asyncio.get_running_loop().create_task(
            self._broadcast(), name="dashboard-broadcast"
        )
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        log.info("dashboard on %s%s", self.url, "" if self._password else " (this machine only, no password)")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        broadcaster, self._broadcaster = self._broadcaster, None
        for task in [*self._streams, *([broadcaster] if broadcaster else [])]:  # none ends by itself
            task.cancel()
        if runner is not None:
            await runner.cleanup()

    def changed(self) -> None:
        """Something the dashboard shows changed (a decision): open streams get a snapshot within
        ``COALESCE_S``, not at the next ``refresh_s``."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _broadcast(self) -> None:
        """One snapshot per change (a burst of decisions coalesced over ``COALESCE_S``) or ``refresh_s``,
        built once for every open stream, and only while one is open."""
        while True:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.settings.refresh_s)
            if changed.is_set():
                await asyncio.sleep(COALESCE_S)
            if self._streams:
                self._latest = self._document()
                published, self._published = self._published, asyncio.Event()
                published.set()

    # ----- access -----
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        refusal = self._refusal(request)
        if refusal is not None:
            self._secure(refusal)
            return refusal
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._secure(exc)
            raise
        if not response.prepared:
            self._secure(response)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request that may not pass, or None."""
        from aiohttp import web  # noqa: PLC0415

        if self._password is None:
            if _host_is_local(request.host):
                return None
            self.counters["host_refused"] += 1
            return web.Response(status=421, text="this dashboard answers only to this machine's own name\n")
        address = request.remote or "?"
        wait_s = self._throttle.retry_after_s(address)
        if wait_s is not None:
            self.counters["throttled"] += 1
            return web.Response(
                status=429, text="too many failed logins\n", headers={"Retry-After": str(int(wait_s) + 1)}
            )
        header = request.headers.get("Authorization")
        given = _credentials(header) if header is not None else None
        user, password = given if given is not None else (b"", b"")
        # Both compared every time, in constant time: neither the length nor which one is wrong shows.
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        if given is not None and user_ok and password_ok:
            return None
        if header is not None:  # a wrong login, or a header that is not one: both count as a failure
            self.counters["logins_failed" if given is not None else "logins_malformed"] += 1
            self._throttle.failed(address)
            if self._throttle.retry_after_s(address) is not None:
                log.warning("dashboard: failed logins from %s, refused for a minute", address)
        return web.Response(status=401, text="login required\n", headers={"WWW-Authenticate": REALM})

    @staticmethod
    def _secure(response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    # ----- pages -----
    async def _page(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415

        return web.Response(body=self._assets["index.html"], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415

        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound
        return web.Response(body=self._assets[name], content_type=STATIC[name], charset="utf-8")

    def _document(self) -> bytes:
        try:
            body = self._snapshot()
        except Exception:  # the page shows the failure; the gateway goes on
            log.warning("dashboard: the snapshot could not be built", exc_info=True)
            self.counters["snapshot_failed"] += 1
            body = {"v": 1, "error": "snapshot_failed"}
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    async def _json(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415

        return web.Response(body=self._document(), content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        if len(self._streams) >= self.settings.max_clients:
            self.counters["streams_refused"] += 1
            return web.Response(status=503, text="too many open dashboards\n", headers={"Retry-After": "5"})
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        self._secure(response)
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        self.counters["streams"] += 1
        try:
            document = self._document()  # its own at first; then the broadcaster's, as it builds them
            while True:
                published = self._published
                await response.write(b"event: snapshot\ndata: " + document + b"\n\n")
                await published.wait()
                document = self._latest
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self._streams.discard(task)
        return response
