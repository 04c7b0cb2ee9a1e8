"""Check-in token verification: one EdDSA signature, the audience, and the time claims against an injected clock."""

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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.types import Options

from edge.clock import Clock

_LOGGER = logging.getLogger(__name__)

# The only algorithm accepted, pinned here and never read from the token: with an asymmetric algorithm the
# gateway's public keys cannot mint tokens, and a pinned list makes alg=none and HS256-with-the-public-key
# confusion impossible.
ALGORITHM: Final = "EdDSA"
# The audience the cloud uses for tokens that are valid in every store of the retailer.
SHARED_AUDIENCE: Final = "stores"
# Claims without which a token cannot be used: who, until when, which token (replay), for where.
REQUIRED_CLAIMS: Final = ("sub", "exp", "jti", "aud")
# sub and jti are opaque ids (pseudonyms, UUIDs); anything longer is junk, and every jti is stored until exp.
MAX_ID_CHARS: Final = 128
# Hex chars of sha256(token) that logs may show: enough to correlate lines, useless to an attacker.
FINGERPRINT_CHARS: Final = 8
# Signature, required claims and audience are left to PyJWT; the time claims are checked here against the
# injected clock, because PyJWT reads the system clock.
_DECODE_OPTIONS: Final[Options] = {
    "require": list(REQUIRED_CLAIMS),
    "verify_signature": True,
    "verify_aud": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
}


class RejectReason(StrEnum):
    """Why a token was refused; the values are the counter names on health and in logs."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    TOO_LONG_LIVED = "too_long_lived"
    UNKNOWN_KEY = "unknown_key"
    REPLAYED = "replayed"  # set by the caller when the ledger refuses the jti; never by the verifier
    OVERSIZED = "oversized"


@dataclass(slots=True, frozen=True)
class Rejection:
    """A refused token: only the reason, never the token or its claims."""

    reason: RejectReason


@dataclass(slots=True, frozen=True)
class VerifiedToken:
    """A token whose signature, audience and times hold; ``aud`` is the audience it matched."""

    sub: str
    jti: str
    exp_wall: float
    aud: str
    claims: dict[str, Any]
    # Until when the token would still verify (exp plus the leeway): its jti must be remembered that long.
    replay_until: float


# One instance per reason: a rejection carries nothing else, so the hot path allocates nothing.
_REJECTIONS: Final = {reason: Rejection(reason) for reason in RejectReason}


@dataclass(slots=True, frozen=True)
class TokenStats:
    """Tokens verified and refused (by reason, only the reasons that happened) since the start."""

    accepted: int
    rejected: Mapping[RejectReason, int]


class TokenVerifier:
    """Verifies check-in tokens; ``verify`` never raises and counts every outcome exactly once."""

    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        audience: str,
        clock: Clock,
        *,
        leeway_s: float = 30,
        max_lifetime_s: float = 3600,
        max_token_bytes: int = 4096,
    ) -> None:
        if not audience:
            raise ValueError("the store id (audience) must not be empty")
        if leeway_s < 0 or max_lifetime_s <= 0 or max_token_bytes <= 0:
            raise ValueError("leeway_s must be >= 0, max_lifetime_s and max_token_bytes > 0")
        self._keys = dict(public_keys)
        self._store_id = audience
        self._audiences = [audience, SHARED_AUDIENCE]
        self._clock = clock
        self._leeway_s = float(leeway_s)
        self._max_lifetime_s = float(max_lifetime_s)
        self._max_token_bytes = max_token_bytes
        self.rejections: Counter[RejectReason] = Counter()
        self.accepted = 0

    def set_key(self, kid: str, key: Ed25519PublicKey) -> None:
        """Trust ``key`` for tokens naming ``kid`` from now on (a key pushed by the cloud)."""
        self._keys[kid] = key

    def revoke_key(self, kid: str) -> bool:
        """Stop trusting ``kid`` at once; True if it was trusted."""
        return self._keys.pop(kid, None) is not None

    def stats(self) -> TokenStats:
        return TokenStats(self.accepted, dict(self.rejections))

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def keys_for(self, kid: str | None) -> tuple[Ed25519PublicKey, ...]:
        """The cloud's keys a signature naming ``kid`` may be checked with: that key, or every key when there
        is no kid (as for tokens). They also sign the cloud's privacy requests (edge/privacy/request.py)."""
        if kid is None:
            return tuple(self._keys.values())
        key = self._keys.get(kid)
        return () if key is None else (key,)

    def verify(self, token: object) -> VerifiedToken | Rejection:
        """Check ``token`` completely (except replay, which the caller claims in the ledger)."""
        outcome = self._check(token)
        if isinstance(outcome, VerifiedToken):
            self.accepted += 1
            return outcome
        self.rejections[outcome] += 1
        if _LOGGER.isEnabledFor(logging.DEBUG):
            shown = fingerprint(token) if outcome is not RejectReason.OVERSIZED else "-"
            _LOGGER.debug("token rejected: %s (sha256 %s)", outcome, shown)
        return _REJECTIONS[outcome]

    def _check(self, token: object) -> VerifiedToken | RejectReason:
        if not isinstance(token, str):
            return RejectReason.MALFORMED
        # Before any parsing: the cost of everything below grows with the input.
        if len(token) > self._max_token_bytes:
            return RejectReason.OVERSIZED
        if not token.isascii():  # a compact JWT is base64url and dots only
            return RejectReason.MALFORMED
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return RejectReason.MALFORMED
        alg = header.get("alg")
        if not isinstance(alg, str):
            return RejectReason.MALFORMED
        if alg != ALGORITHM:
            return RejectReason.BAD_SIGNATURE
        kid = header.get("kid")  # PyJWT has checked that a kid, if present, is a string
        if kid is not None:
            key = self._keys.get(kid)
            if key is None:
                return RejectReason.UNKNOWN_KEY
            candidates: tuple[Ed25519PublicKey, ...] = (key,)
        else:
            candidates = tuple(self._keys.values())
            if not candidates:
                return RejectReason.UNKNOWN_KEY
        decoded = self._decode(token, candidates)
        if isinstance(decoded, RejectReason):
            return decoded
        return self._check_claims(decoded)

    def _decode(self, token: str, keys: tuple[Ed25519PublicKey, ...]) -> dict[str, Any] | RejectReason:
        for key in keys:
            try:
                return jwt.decode(
                    token, key, algorithms=[ALGORITHM], audience=self._audiences, options=_DECODE_OPTIONS
                )
            except jwt.InvalidSignatureError:
                continue  # not this key (a subclass of DecodeError, so caught first)
            except jwt.MissingRequiredClaimError as exc:
                _LOGGER.debug("token is missing claim %s", exc.claim)
                return RejectReason.MISSING_CLAIM
            except jwt.InvalidAudienceError:
                return RejectReason.WRONG_AUDIENCE
            except jwt.InvalidAlgorithmError:
                return RejectReason.BAD_SIGNATURE
            except jwt.PyJWTError:
                return RejectReason.MALFORMED
        return RejectReason.BAD_SIGNATURE

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedToken | RejectReason:
        sub, jti = claims["sub"], claims["jti"]
        if not _is_id(sub) or not _is_id(jti):
            return RejectReason.MALFORMED
        exp = _number(claims["exp"])
        nbf = _number(claims["nbf"]) if "nbf" in claims else None
        iat = _number(claims["iat"]) if "iat" in claims else None
        if exp is None or ("nbf" in claims and nbf is None) or ("iat" in claims and iat is None):
            return RejectReason.MALFORMED
        now = self._clock.wall()
        leeway = self._leeway_s
        # Same boundaries as PyJWT's own checks, on the injected clock.
        if (nbf is not None and nbf > now + leeway) or (iat is not None and iat > now + leeway):
            return RejectReason.NOT_YET_VALID
        if exp <= now - leeway:
            return RejectReason.EXPIRED
        # Short-lived tokens only: bounded by the issuer's own iat when given, and always by our clock
        # (with the skew allowance, so a token minted at the limit by a cloud a little ahead still passes).
        if iat is not None and exp - iat > self._max_lifetime_s:
            return RejectReason.TOO_LONG_LIVED
        if exp - now > self._max_lifetime_s + leeway:
            return RejectReason.TOO_LONG_LIVED
        aud = claims["aud"]  # PyJWT has checked: a string or a list of strings holding one of ours
        audiences = [aud] if isinstance(aud, str) else aud
        matched = self._store_id if self._store_id in audiences else SHARED_AUDIENCE
        return VerifiedToken(
            sub=sub, jti=jti, exp_wall=exp, aud=matched, claims=claims, replay_until=exp + leeway
        )


def fingerprint(token: object) -> str:
    """What may be logged about a token: 8 hex chars of its sha256 ("-" for a non-text input)."""
    # Enough to match log lines about the same token; far too little to learn or replay anything from.
    if not isinstance(token, str):
        return "-"
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:FINGERPRINT_CHARS]


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def _number(value: object) -> float | None:
    """A finite JSON number as float; None for anything else (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None
