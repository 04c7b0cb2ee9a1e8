"""Bearer tokens: the admin token, and store tokens kept only as SHA-256 and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from aiohttp import web

from profilestore.storage import Storage

_SCHEME: Final = "bearer"
# Any header longer than this is not one of our tokens (and is not hashed).
_MAX_HEADER_CHARS: Final = 1024


class AuthError(Exception):
    """``status`` 401 (no or unknown token) or 403 (a valid token for another store)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None if there is no such header."""
    header = request.headers.get("Authorization")
    if header is None or len(header) > _MAX_HEADER_CHARS:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token:
        return None
    return token


class AdminAuth:
    """Checks the admin token; only its digest is kept."""

    def __init__(self, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("the admin token is empty")
        self._digest = token_digest(admin_token)

    def check(self, request: web.Request) -> None:
        token = bearer_token(request)
        if token is None:
            raise AuthError(401, "an admin bearer token is required")
        # Digests of equal length: the comparison's time says nothing about the token.
        if not hmac.compare_digest(token_digest(token), self._digest):
            raise AuthError(401, "unknown admin token")


async def check_store(storage: Storage, request: web.Request, store_id: str) -> None:
    """Accept only the token registered for ``store_id``: 401 without a known token, 403 for another store's."""
    token = bearer_token(request)
    if token is None:
        raise AuthError(401, "a store bearer token is required")
    digest = token_digest(token)
    expected = await storage.store_token(store_id)
    if expected is not None and hmac.compare_digest(digest, expected):
        return
    if await storage.store_of_token(digest) is not None:
        raise AuthError(403, f"this token does not belong to store {store_id}")
    raise AuthError(401, "unknown store token")
