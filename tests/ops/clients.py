"""Helpers of the operations tests: password files made with mosquitto_passwd, authenticated clients."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mqtt import Probe

REPO = Path(__file__).resolve().parents[2]


def passwd_tool() -> str:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.fail("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    return tool


def make_passwords(users: list[str]) -> dict[str, str]:
    """A fresh random password per user: nothing secret is ever stored in the repository."""
    return {user: secrets.token_urlsafe(18) for user in users}


def write_password_file(path: Path, passwords: dict[str, str]) -> Path:
    tool = passwd_tool()
    path.unlink(missing_ok=True)
    for index, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run([tool, *create, "-b", str(path), user, password], check=True, capture_output=True)
    return path


class Client(Probe):
    """One authenticated MQTT 3.1.1 client that keeps every message it receives.

    ``wait_for`` wakes on each arriving message (no polling); MQTT keeps one publisher's messages in
    order for one subscriber, which the tests use to prove that something did *not* arrive.
    """

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *filters: str,
        identifier: str | None = None,
        host: str = "127.0.0.1",
        tls_ca: Path | None = None,
    ) -> None:
        super().__init__(
            port,
            *filters,
            identifier=identifier,
            username=username,
            password=password,
            host=host,
            tls_ca=tls_ca,
        )

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for name, payload, _ in self.messages if name == topic]

    def saw(self, topic: str, payload: bytes | str) -> bool:
        wanted = payload.encode() if isinstance(payload, str) else payload
        return wanted in self.payloads(topic)

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_message(self, topic: str, payload: bytes | str, timeout: float = 5.0) -> None:
        try:
            await self.wait_for(lambda: self.saw(topic, payload), timeout)
        except TimeoutError:
            seen = [name for name, _, _ in self.messages]
            raise AssertionError(
                f"{payload!r} on {topic} did not arrive in {timeout} s; saw {seen}"
            ) from None


def token() -> str:
    """A payload no other message has: what arrives is what this test sent."""
    return secrets.token_hex(8)
