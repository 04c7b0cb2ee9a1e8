"""Shopper token verification: EdDSA signature, time claims on the injected clock, audience, lifetime.

Replay (``jti``) is the caller's job: it needs the durable ledger. Nothing here raises on any input.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import jwt
from jwt.types import Options
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.clock import Clock

log = logging.getLogger(__name__)

# The store-wide audience the cloud may use for tokens valid in any of the retailer's stores.
ANY_STORE: Final = "stores"
# Pseudonyms and token ids are short opaque strings; longer ones are not ours.
MAX_ID_CHARS: Final = 128
REQUIRED: Final = ("sub", "exp", "jti", "aud")
# PyJWT checks time claims against time.time(); we check them ourselves against the injected clock.
_DECODE_OPTIONS: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    TOO_LONG_LIVED = "too_long_lived"
    UNKNOWN_KEY = "unknown_key"
    REPLAYED = "replayed"
    OVERSIZED = "oversized"


@dataclass(slots=True, frozen=True)
class VerifiedToken:
    sub: str
    jti: str
    exp_wall: float
    aud: tuple[str, ...]
    claims: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Rejection:
    reason: RejectReason


def fingerprint(token: object) -> str:
    """What logs may carry about a token: 8 hex chars of its sha256, never the token."""
    return hashlib.sha256(str(token).encode("utf-8", "replace")).hexdigest()[:8]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _short_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


class TokenVerifier:
    """Verifies check-in tokens against the cloud's public keys; counts every outcome."""

    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        audience: str,
        clock: Clock,
        *,
        leeway_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        max_token_bytes: int = 4096,
    ) -> None:
        self._keys = dict(public_keys)
        self._audience = audience
        self._clock = clock
        self._leeway = leeway_s
        self._max_lifetime = max_lifetime_s
        self._max_bytes = max_token_bytes
        self.rejections: Counter[RejectReason] = Counter()
        self.accepted = 0

    def verify(self, token: object) -> VerifiedToken | Rejection:
        outcome = self._verify(token)
        if isinstance(outcome, Rejection):
            self.rejections[outcome.reason] += 1
            log.debug("token %s rejected: %s", fingerprint(token), outcome.reason)
        else:
            self.accepted += 1
        return outcome

    def _verify(self, token: object) -> VerifiedToken | Rejection:
        if not isinstance(token, str):
            return Rejection(RejectReason.MALFORMED)
        if len(token) > self._max_bytes:
            return Rejection(RejectReason.OVERSIZED)
        claims = self._signed_claims(token)
        if isinstance(claims, Rejection):
            return claims
        return self._check_claims(claims)

    def _signed_claims(self, token: str) -> dict[str, Any] | Rejection:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Rejection(RejectReason.MALFORMED)
        if header.get("alg") != "EdDSA":
            # alg=none, HS256 with the public key as secret, RS256...: never accepted.
            return Rejection(RejectReason.BAD_SIGNATURE)
        kid = header.get("kid")
        if kid is not None:
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                return Rejection(RejectReason.UNKNOWN_KEY)
            candidates = [key]
        else:
            candidates = list(self._keys.values())
        for key in candidates:
            try:
                claims = jwt.decode(token, key=key, algorithms=["EdDSA"], options=_DECODE_OPTIONS)
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                return Rejection(RejectReason.MALFORMED)
            return claims
        return Rejection(RejectReason.BAD_SIGNATURE)

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedToken | Rejection:
        if any(claims.get(name) is None for name in REQUIRED):
            return Rejection(RejectReason.MISSING_CLAIM)
        sub, jti = claims["sub"], claims["jti"]
        exp = _number(claims["exp"])
        if exp is None or not _short_id(sub) or not _short_id(jti):
            return Rejection(RejectReason.MALFORMED)
        now = self._clock.wall()
        if exp + self._leeway <= now:
            return Rejection(RejectReason.EXPIRED)
        for name in ("nbf", "iat"):
            if name in claims:
                value = _number(claims[name])
                if value is None:
                    return Rejection(RejectReason.MALFORMED)
                if value - self._leeway > now:
                    return Rejection(RejectReason.NOT_YET_VALID)
        iat = _number(claims.get("iat"))
        issued = now if iat is None else iat
        if exp - min(issued, now) > self._max_lifetime:
            return Rejection(RejectReason.TOO_LONG_LIVED)
        aud = claims["aud"]
        audiences = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) else ()
        if not all(isinstance(item, str) for item in audiences):
            return Rejection(RejectReason.MALFORMED)
        if self._audience not in audiences and ANY_STORE not in audiences:
            return Rejection(RejectReason.WRONG_AUDIENCE)
        return VerifiedToken(sub=sub, jti=jti, exp_wall=exp, aud=audiences, claims=claims)
