"""The demo's "cloud": the reference profile store in-process, and the admin calls the demo makes on it."""

from __future__ import annotations

import secrets
from types import TracebackType
from typing import Any

import aiohttp

from edge.clock import SystemClock, iso_utc


class DemoCloud:
    """Admin calls on a running profile store (docs/sync.md, admin API)."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        self.base_url = base_url
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DemoCloud:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self._session is not None, "use DemoCloud as an async context manager"
        async with self._session.request(method, f"{self.base_url}/admin/v1{path}", json=body) as response:
            response.raise_for_status()
            return await response.json() if response.content_type == "application/json" else None

    async def add_store(self, store_id: str) -> str:
        token = secrets.token_urlsafe(24)
        await self._call("PUT", f"/stores/{store_id}", {"token": token})
        return token

    async def put_shopper(self, shopper_id: str, profile: dict[str, Any]) -> None:
        await self._call("PUT", f"/shoppers/{shopper_id}", {"profile": profile})

    async def put_consent(self, shopper_id: str, purpose: str, granted: bool) -> None:
        body = {"granted": granted, "at": iso_utc(SystemClock().wall()), "source": "app"}
        await self._call("PUT", f"/shoppers/{shopper_id}/consents/{purpose}", body)

    async def erase(self, shopper_id: str) -> None:
        await self._call("DELETE", f"/shoppers/{shopper_id}")

    async def stats(self) -> dict[str, Any]:
        result = await self._call("GET", "/stats")
        return result if isinstance(result, dict) else {}
