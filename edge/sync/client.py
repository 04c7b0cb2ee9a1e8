"""The HTTP client of the cloud profile store (docs/sync-openapi.yaml): one aiohttp session per gateway.

Every failure becomes one of two exceptions: `CloudUnavailableError` (network, timeout, 5xx, 429, a truncated or
unparsable answer: try again later) or `CloudRefusedError` (401/403/400/404/...: our request or configuration is
wrong; retrying the same thing soon will not help). Neither ever carries the bearer token.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from edge.clock import Clock, SystemClock
from edge.sync.parse import (
    AnswerError,
    FetchedProfile,
    Page,
    PushResult,
    parse_page,
    parse_profile,
    parse_push_result,
    parse_retry_after,
)

MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
_TAG: Final = re.compile(r"<[^>]{0,200}>")
# Below this a request body is sent as is: gzip costs more CPU than it saves on a LAN-sized body.
GZIP_MIN_BYTES: Final = 1024


class CloudUnavailableError(Exception):
    """The cloud did not answer usefully this time; ``reason`` is a short counter label.

    ``retry_after_s``: what the answer's ``Retry-After`` asked for (seconds from now), if it had one.
    """

    def __init__(self, reason: str, detail: str = "", *, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(f"{reason}: {detail}" if detail else reason)


class CloudRefusedError(Exception):
    """The whole request was refused (4xx other than 408/429): a configuration or contract problem.

    Whoever answered (the cloud, or a proxy in front of it) judged the request, not any one event in it.
    """

    def __init__(self, status: int, detail: str, *, retry_after_s: float | None = None) -> None:
        self.status = status
        self.reason = f"http{status}"
        self.detail = detail
        self.retry_after_s = retry_after_s
        super().__init__(f"HTTP {status}: {detail}")


class CloudClient:
    """Pull, push and fetch against one store's endpoints; an async context manager owning the session."""

    def __init__(
        self,
        base_url: str,
        store_id: str,
        token: str,
        *,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + f"/v1/stores/{quote(store_id, safe='')}"
        self._headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # Only to turn an HTTP-date Retry-After into a delay.
        self._clock = clock or SystemClock()

    async def __aenter__(self) -> CloudClient:
        # A small pool: one pull, one push and a few profile fetches at once is all a store needs.
        connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers=self._headers, auto_decompress=True
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def pull(self, cursor: str | None, limit: int) -> Page:
        params = {"limit": str(limit)}
        if cursor is not None:
            params["since"] = cursor
        document = await self._request("GET", "/changes", params=params)
        try:
            return parse_page(document)
        except AnswerError as error:
            raise CloudUnavailableError(error.reason, str(error)) from None

    async def push(self, bodies: Sequence[bytes], ids: Sequence[str]) -> PushResult:
        """Send events already encoded as compact JSON objects (``ids`` theirs, in order); one request, gzip
        when it pays. Raises unless the answer accounts for every event (``parse_push_result``)."""
        payload = b'{"events":[' + b",".join(bodies) + b"]}"
        headers = {"Content-Type": "application/json"}
        if len(payload) >= GZIP_MIN_BYTES:
            payload = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        document = await self._request("POST", "/events", data=payload, headers=headers)
        try:
            return parse_push_result(document, ids)
        except AnswerError as error:
            raise CloudUnavailableError(error.reason, str(error)) from None

    async def fetch_profile(self, shopper_id: str, timeout_s: float) -> FetchedProfile | None:
        """One shopper's profile, or None if the cloud does not know them; bounded by ``timeout_s``."""
        try:
            document = await self._request(
                "GET",
                f"/profiles/{quote(shopper_id, safe='')}",
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            )
        except CloudRefusedError as error:
            if error.status == 404:
                return None
            raise
        try:
            return parse_profile(document, shopper_id)
        except AnswerError as error:
            raise CloudUnavailableError(error.reason, str(error)) from None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._session is None:
            raise CloudUnavailableError("not_started", "the sync service is not running")
        try:
            async with self._session.request(method, self._base + path, **kwargs) as response:
                if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
                    raise CloudUnavailableError("too_large", f"{response.content_length} bytes")
                body = await response.content.read(MAX_ANSWER_BYTES + 1)
                if len(body) > MAX_ANSWER_BYTES:
                    raise CloudUnavailableError("too_large", f"more than {MAX_ANSWER_BYTES} bytes")
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.wall())
        except TimeoutError:
            raise CloudUnavailableError("timeout") from None
        except aiohttp.ClientPayloadError as error:
            raise CloudUnavailableError("truncated", type(error).__name__) from None
        except aiohttp.ClientResponseError as error:
            raise CloudUnavailableError("bad_response", f"HTTP {error.status}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise CloudUnavailableError("unreachable", type(error).__name__) from None
        except asyncio.IncompleteReadError:
            raise CloudUnavailableError("truncated") from None
        if status >= 500 or status in (408, 429):
            raise CloudUnavailableError(f"http{status}", _detail(body), retry_after_s=retry_after)
        if status >= 400:
            raise CloudRefusedError(status, _detail(body), retry_after_s=retry_after)
        if status != 200:
            raise CloudUnavailableError(f"http{status}", "unexpected status")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CloudUnavailableError("bad_json") from None


def _detail(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # Not the cloud's JSON: often a proxy's HTML page. Its text, tags and line breaks out, for the log.
        text = _TAG.sub(" ", body[:2048].decode("utf-8", "replace"))
        return " ".join(text.split())[:120]
    if isinstance(document, dict):
        return str(document.get("detail") or document.get("error") or "")[:200]
    return ""
