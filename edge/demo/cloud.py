"""The demo's "cloud": the reference profile store as a child process, and the admin calls the demo makes on it.

The reference cloud is a program of its own (cloud/, ``profile-store``): the gateway imports nothing of it,
and the demo talks to it over HTTP only, as a store does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp

from edge.clock import SystemClock, iso_utc
from edge.demo.broker import free_loopback_port

# `python -m profilestore` rather than the `profile-store` script: the same interpreter and venv as the demo.
CLOUD_COMMAND: Final[tuple[str, ...]] = (sys.executable, "-m", "profilestore")
# Importing aiohttp and opening SQLite takes about a second here; a Pi is 3-5x slower.
START_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 10.0
_POLL_S: Final = 0.05


class CloudUnavailableError(RuntimeError):
    """The reference cloud is not installed, or did not start."""


@asynccontextmanager
async def reference_cloud(
    workdir: Path, admin_token: str, *, command: Sequence[str] | None = None
) -> AsyncIterator[str]:
    """``profile-store`` on a free loopback port over SQLite in ``workdir`` until the block exits; its base URL.

    ``command`` starts it (default ``CLOUD_COMMAND``; the tests start it on their timeline).
    """
    if command is None:
        command = CLOUD_COMMAND
        if importlib.util.find_spec("profilestore") is None:
            msg = (
                "the demo runs the reference cloud, which is not installed: pip install -e contract -e cloud "
                "from the repository (make demo does)"
            )
            raise CloudUnavailableError(msg)
    token_file = workdir / "cloud-admin-token"
    token_file.touch(mode=0o600)
    token_file.write_text(admin_token, encoding="utf-8")
    port = free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        *command,
        "--db",
        f"sqlite:///{workdir / 'cloud.db'}",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin-token-file",
        str(token_file),
        "--log-level",
        "WARNING",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _until_ready(process, base_url)
        yield base_url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _until_ready(process: asyncio.subprocess.Process, base_url: str) -> None:
    """Returns once ``/healthz`` answers 200; CloudUnavailableError if the process ends or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while process.returncode is None and loop.time() < deadline:
            try:
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass  # not listening yet
            await asyncio.sleep(_POLL_S)
    if process.returncode is not None:
        msg = (
            f"the reference cloud exited with {process.returncode} before it was ready (its stderr says why)"
        )
    else:
        msg = f"the reference cloud was not ready within {START_TIMEOUT_S:.0f} s"
    raise CloudUnavailableError(msg)


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

    async def put_shopper(self, shopper_id: str, profile: dict[str, Any], home_store: str) -> None:
        """A shopper of ``home_store``: the cloud sends a store only its own shoppers (docs/profile-store.md)."""
        await self._call("PUT", f"/shoppers/{shopper_id}", {"profile": profile, "home_store": home_store})

    async def put_consent(self, shopper_id: str, purpose: str, granted: bool) -> None:
        body = {"granted": granted, "at": iso_utc(SystemClock().wall()), "source": "app"}
        await self._call("PUT", f"/shoppers/{shopper_id}/consents/{purpose}", body)

    async def put_order(
        self, order_id: str, store_id: str, shopper_id: str, reference: str, counter: str
    ) -> None:
        body = {"store_id": store_id, "shopper_id": shopper_id, "reference": reference, "counter": counter}
        await self._call("PUT", f"/orders/{order_id}", body)

    async def erase(self, shopper_id: str) -> None:
        await self._call("DELETE", f"/shoppers/{shopper_id}")

    async def stats(self) -> dict[str, Any]:
        result = await self._call("GET", "/stats")
        return result if isinstance(result, dict) else {}
