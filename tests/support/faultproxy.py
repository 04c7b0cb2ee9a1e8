"""A real HTTP proxy (aiohttp) in front of the real reference store, answering faults on a schedule.

What stands between a store and its cloud in the field (a reverse proxy, a WAF, a captive portal, a broken
ingress) answers things the cloud never would: ``400``/``413`` as HTML, ``429`` with ``Retry-After``, ``502``
pages, a ``200`` that is an HTML page or a garbled JSON, truncated bodies, reset connections. ``plan`` queues
faults for the next matching requests; everything else is forwarded byte for byte (bodies stay compressed).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

import aiohttp
from aiohttp import web

from profilestore.server import run_app

Fault = Literal[
    "http400_html",
    "http413_html",
    "http429",
    "http429_date",
    "http500",
    "http502_html",
    "html200",
    "garbled200",
    "truncated",
    "reset",
    "stored_then_truncated",
    "stored_then_reset",
]
FAULTS: Final[tuple[Fault, ...]] = get_args(Fault)
_PASSED_HEADERS: Final = ("Authorization", "Content-Type", "Content-Encoding", "Accept-Encoding")
_ANSWER_HEADERS: Final = ("Content-Type", "Content-Encoding", "Retry-After")
_HTML: Final = b"<html><head><title>%d</title></head><body><h1>%d</h1><hr>nginx</body></html>\n"


@dataclass
class FaultProxy:
    """Forwards to ``upstream``; the next requests whose path ends with ``suffix`` get the planned faults.

    ``body_limit``: like a proxy's ``client_max_body_size``, a request body (as sent: compressed) above it
    gets an HTML 413 without reaching the store. ``retry_after`` is the header of the 429 faults
    (``http429_date`` sends ``retry_after_date`` instead).
    """

    upstream: str
    suffix: str = "/events"
    body_limit: int | None = None
    retry_after: str = "7"
    retry_after_date: str = ""
    url: str = ""
    planned: deque[Fault] = field(default_factory=deque)
    always: Fault | None = None  # after the planned ones, every matching request gets this, until unset
    hits: Counter[str] = field(default_factory=Counter)  # faults answered, and "forwarded", "too_large"
    largest_forwarded: int = 0
    _session: aiohttp.ClientSession | None = None

    def plan(self, fault: Fault, times: int = 1) -> None:
        self.planned.extend([fault] * times)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = None
        if request.path.endswith(self.suffix):
            fault = self.planned.popleft() if self.planned else self.always
        if fault is not None:
            self.hits[fault] += 1
        if fault is None and self.body_limit is not None and len(body) > self.body_limit:
            self.hits["too_large"] += 1
            return _html(413)
        if fault in ("stored_then_truncated", "stored_then_reset"):
            await self._forward(request, body)  # the store has the events; the answer is lost on the way
            return await _broken(request, truncate=fault == "stored_then_truncated")
        if fault is not None:
            return await self._fault(fault, request)
        return await self._forward(request, body)

    async def _fault(self, fault: Fault, request: web.Request) -> web.StreamResponse:
        if fault == "http400_html":
            return _html(400)
        if fault == "http413_html":
            return _html(413)
        if fault in ("http429", "http429_date"):
            after = self.retry_after if fault == "http429" else self.retry_after_date
            return web.json_response({"error": "rate_limited"}, status=429, headers={"Retry-After": after})
        if fault == "http500":
            return web.json_response({"error": "internal", "detail": "injected"}, status=500)
        if fault == "http502_html":
            return _html(502)
        if fault == "html200":
            return web.Response(
                body=b"<html><body>Please log in to the store Wi-Fi</body></html>", content_type="text/html"
            )
        if fault == "garbled200":
            # Well-formed JSON that is not a verdict on any event: rejections that name no event.
            garbled = {
                "accepted": 0,
                "duplicates": 0,
                "rejected": [{"index": 0, "reason": "blocked by policy"}],
            }
            return web.json_response(garbled)
        return await _broken(request, truncate=fault == "truncated")

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {name: request.headers[name] for name in _PASSED_HEADERS if name in request.headers}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as answer:
            payload = await answer.read()
            passed = {name: answer.headers[name] for name in _ANSWER_HEADERS if name in answer.headers}
            status = answer.status
        if request.path.endswith(self.suffix) and status == 200:
            self.hits["forwarded"] += 1
            self.largest_forwarded = max(self.largest_forwarded, len(body))
        return web.Response(status=status, body=payload, headers=passed)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # auto_decompress off both ways: bodies pass as sent, gzip included.
        async with aiohttp.ClientSession(auto_decompress=False) as session, run_app(app) as url:
            self._session, self.url = session, url
            try:
                yield self
            finally:
                self._session = None


def _html(status: int) -> web.Response:
    return web.Response(status=status, body=_HTML % (status, status), content_type="text/html")


async def _broken(request: web.Request, *, truncate: bool) -> web.StreamResponse:
    """A 200 that promises more than it sends (truncate), or no answer at all: the connection closes."""
    if truncate:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b'{"accepted": 3, "dupl')
    else:
        response = web.Response(status=200)
    if request.transport is not None:
        request.transport.close()
    return response
