"""Fixtures for the identity tests: fresh Ed25519 keys, claims and a consent sink (``clock``: tests/conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.clock import ManualClock
from edge.events import Purpose
from edge.identity import ConsentView, TokenVerifier, generate_keypair, key_id

STORE = "store-7"
LEEWAY_S = 30.0
MAX_LIFETIME_S = 900.0


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes

    @property
    def public_key(self) -> Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.public_pem)
        assert isinstance(key, Ed25519PublicKey)
        return key

    @property
    def kid(self) -> str:
        return key_id(self.public_key)

    @property
    def keys(self) -> dict[str, Ed25519PublicKey]:
        return {self.kid: self.public_key}


def new_keypair() -> KeyPair:
    return KeyPair(*generate_keypair())


@pytest.fixture
def keypair() -> KeyPair:
    return new_keypair()


@pytest.fixture
def verifier(keypair: KeyPair, clock: ManualClock) -> TokenVerifier:
    return TokenVerifier(keypair.keys, STORE, clock, leeway_s=LEEWAY_S, max_lifetime_s=MAX_LIFETIME_S)


def make_claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    """Valid claims for now; an override of None removes that claim."""
    now = int(clock.wall())
    claims: dict[str, Any] = {
        "sub": "p-1",
        "aud": STORE,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class MemorySink:
    """The ledger's consent contract in memory: keeps the maximum of (at_wall, withdrawn, source).

    ``gate`` holds writes until set; ``fail`` makes the next write raise.
    """

    rows: dict[tuple[str, Purpose], Any] = field(default_factory=dict)
    writes: list[Any] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail: Exception | None = None

    async def set_consent(self, row: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        self.writes.append(row)
        key = (row.shopper_id, row.purpose)
        old = self.rows.get(key)
        if old is None or rank(row) > rank(old):
            self.rows[key] = row

    async def load_consents(self) -> list[ConsentView]:
        return list(self.rows.values())


def rank(row: ConsentView) -> tuple[float, bool, str]:
    return (row.at_wall, not row.granted, row.source)
