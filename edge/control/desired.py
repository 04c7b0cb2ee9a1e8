"""A configuration push (``config/desired``) -> a verified, versioned overlay, or the reason it is refused.

Pure: bytes in, a ``DesiredConfig`` or a ``PushRejected`` out; no I/O, no clock. The push is a compact JWS
(EdDSA) signed by the cloud's *configuration* key, a different key from the one that signs shoppers'
tokens: a leaked token key must not reconfigure a store. Its claims::

    {"aud": "store-001" (or a list of store ids), "version": 42, "iat": 1795342503,
     "config": {"decisions": {"policy": {"epsilon": 0.05}}, "logging": {"level": "DEBUG"}}}

``config`` is an overlay on the store's own file: tables merge key by key, everything else (numbers,
strings, lists such as ``zones`` or ``displays``) replaces the file's value. The result is validated by
the same pydantic model as the file (``edge/config/model.py``) before anything is applied. What an overlay
may contain at all (the allow-list) is ``edge/config/push.py``'s, checked by the controller.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.types import Options

ALGORITHM: Final = "EdDSA"
# Nesting deeper than this is not a configuration (and would make merging recursive without bound).
MAX_DEPTH: Final = 16


class PushReason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_TEXT = "not_text"
    MALFORMED = "malformed"  # not a compact JWS
    BAD_ALGORITHM = "bad_algorithm"  # unsigned ("none") or anything but EdDSA
    UNKNOWN_KEY = "unknown_key"  # a kid this store does not know
    BAD_SIGNATURE = "bad_signature"
    WRONG_STORE = "wrong_store"  # signed for other stores
    BAD_CLAIMS = "bad_claims"  # version or config missing or of the wrong type
    FORBIDDEN_KEY = "forbidden_key"  # a key off the allow-list (edge/config/push.py)
    FORBIDDEN_VALUE = "forbidden_value"  # an allowed key with a value a push may not use (a path, a host)
    NOT_NEWER = "not_newer"
    INVALID_CONFIG = "invalid_config"  # the merged configuration fails validation or names missing files
    STATE_WRITE_FAILED = "state_write_failed"  # the snapshot could not be made durable (disk full...)
    APPLY_FAILED = "apply_failed"  # a part refused it (e.g. a model that does not load): nothing changed


@dataclass(frozen=True, slots=True)
class PushRejected:
    reason: PushReason
    detail: str = ""
    version: int | None = None  # when the signature was good enough to know it


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    version: int
    overlay: dict[str, Any]
    issued_at: float | None


def verify_push(
    payload: bytes,
    keys: Mapping[str, Ed25519PublicKey],
    store_id: str,
    *,
    max_bytes: int,
) -> DesiredConfig | PushRejected:
    """Check size, form, algorithm, signature, audience and claims, in that order (cheapest first)."""
    if len(payload) > max_bytes:
        return PushRejected(PushReason.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        token = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        return PushRejected(PushReason.NOT_TEXT, "a compact JWS is ASCII")
    if token.count(".") != 2:
        return PushRejected(PushReason.MALFORMED, "not a compact JWS (header.payload.signature)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        return PushRejected(PushReason.MALFORMED, f"header: {exc}")
    if header.get("alg") != ALGORITHM:
        return PushRejected(PushReason.BAD_ALGORITHM, f"alg {header.get('alg')!r}; only EdDSA is accepted")
    kid = header.get("kid")
    if kid is not None:
        key = keys.get(kid)
        if key is None:
            return PushRejected(PushReason.UNKNOWN_KEY, f"kid {kid!r}")
        candidates: Sequence[Ed25519PublicKey] = (key,)
    else:
        candidates = tuple(keys.values())
    claims = _decode(token, candidates, store_id)
    if isinstance(claims, PushRejected):
        return claims
    return _desired(claims)


def _decode(token: str, keys: Sequence[Ed25519PublicKey], store_id: str) -> dict[str, Any] | PushRejected:
    options: Options = {"require": ["aud", "version", "config"], "verify_iat": False}
    for key in keys:
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=store_id, options=options)
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            return PushRejected(PushReason.WRONG_STORE, f"not signed for store {store_id}")
        except jwt.MissingRequiredClaimError as exc:
            return PushRejected(PushReason.BAD_CLAIMS, f"missing claim {exc.claim}")
        except jwt.PyJWTError as exc:
            return PushRejected(PushReason.MALFORMED, str(exc))
        return claims
    return PushRejected(PushReason.BAD_SIGNATURE, "no configured key verifies it")


def _desired(claims: dict[str, Any]) -> DesiredConfig | PushRejected:
    version = claims.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return PushRejected(PushReason.BAD_CLAIMS, "version must be a positive integer")
    if version >= 2**63:
        return PushRejected(PushReason.BAD_CLAIMS, "version out of range")
    overlay = claims.get("config")
    if not isinstance(overlay, dict):
        return PushRejected(PushReason.BAD_CLAIMS, "config must be a JSON object", version)
    if _depth(overlay) > MAX_DEPTH:
        return PushRejected(PushReason.BAD_CLAIMS, f"config nested deeper than {MAX_DEPTH}", version)
    iat = claims.get("iat")
    issued = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None
    return DesiredConfig(version, overlay, issued)


def _depth(value: object, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level + 1)
    return level


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` on top: tables merge key by key, any other value replaces. Copies."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def canonical(overlay: Mapping[str, Any]) -> str:
    """A stable text of an overlay (snapshots, comparisons)."""
    return json.dumps(overlay, sort_keys=True, separators=(",", ":"))
