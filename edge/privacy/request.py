"""The cloud's signed request for a shopper's export (``{root}/privacy/request``) -> a verified request or why not.

Pure: bytes, the cloud's keys, the store id and the time in. A compact JWS (EdDSA) signed with one of the
cloud's *token* keys (the keys that vouch for shoppers, synced as ``token_key`` changes): a privacy request
is the cloud speaking for a shopper, as a check-in token is. A leaked token key could at worst make a store
send a shopper's export to the retailer's own cloud, which holds that shopper's data already: the answer
never goes anywhere else (the sync outbox). Claims::

    {"aud": "store-001" (or a list), "kind": "export", "request_id": "r-2026-0042", "sub": "<shopper id>",
     "iat": 1796000000, "exp": 1796003600}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.sources.rejections import PrivacyRequestReject

ALGORITHM: Final = "EdDSA"
MAX_BYTES: Final = 16 * 1024
LEEWAY_S: Final = 60.0
# A request older than this is refused even if its exp says more: a request is answered within hours.
MAX_LIFETIME_S: Final = 7 * 86_400.0
# ``iat`` and ``exp`` are JSON numbers of unix seconds in 0..this (2100-01-01): compared before any arithmetic,
# so a 401-digit integer (OverflowError in ``exp + LEEWAY_S``), NaN (which every comparison lets through) or
# ±inf is refused as ``bad_claims``.
MAX_CLAIM_WALL: Final = 4_102_444_800
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    request_id: str
    shopper_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class RequestRefused:
    reason: PrivacyRequestReject
    detail: str = ""


def verify_request(
    payload: bytes,
    keys_for: Callable[[str | None], Sequence[Ed25519PublicKey]],
    store_id: str,
    now_wall: float,
) -> PrivacyRequest | RequestRefused:
    if len(payload) > MAX_BYTES:
        return RequestRefused(PrivacyRequestReject.TOO_LARGE)
    try:
        text = payload.decode("ascii").strip()
        header = jwt.get_unverified_header(text)
    except (UnicodeDecodeError, jwt.PyJWTError) as exc:
        return RequestRefused(PrivacyRequestReject.MALFORMED, type(exc).__name__)
    if header.get("alg") != ALGORITHM:
        return RequestRefused(PrivacyRequestReject.BAD_ALGORITHM, str(header.get("alg"))[:16])
    kid = header.get("kid")
    keys = keys_for(kid if isinstance(kid, str) else None)
    if not keys:
        return RequestRefused(PrivacyRequestReject.UNKNOWN_KEY)
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                text,
                key,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, ValueError) as exc:
            return RequestRefused(PrivacyRequestReject.MALFORMED, type(exc).__name__)
    if claims is None:
        return RequestRefused(PrivacyRequestReject.BAD_SIGNATURE)
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if store_id not in audiences:
        return RequestRefused(PrivacyRequestReject.WRONG_STORE)
    return _claims(claims, now_wall)


def _claims(claims: dict[str, Any], now_wall: float) -> PrivacyRequest | RequestRefused:
    kind, request_id, sub = claims.get("kind"), claims.get("request_id"), claims.get("sub")
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        kind != "export"
        or not isinstance(request_id, str)
        or _REQUEST_ID.fullmatch(request_id) is None
        or not isinstance(sub, str)
        or not 1 <= len(sub) <= 128
        or not sub.isprintable()
        or not all(
            isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= MAX_CLAIM_WALL
            for t in (iat, exp)
        )
    ):
        return RequestRefused(PrivacyRequestReject.BAD_CLAIMS)
    assert isinstance(iat, int | float)
    assert isinstance(exp, int | float)
    if exp + LEEWAY_S < now_wall or iat - LEEWAY_S > now_wall or exp - iat > MAX_LIFETIME_S:
        return RequestRefused(PrivacyRequestReject.EXPIRED)
    return PrivacyRequest(request_id=request_id, shopper_id=sub, kind=kind)
