"""Pure parsers of the cloud's answers: a page of changes, a push result, one profile.

A broken envelope raises `AnswerError` (the request is retried later, nothing is applied). Inside a good page,
one change that does not validate is skipped and counted by reason, so one bad row can never stall a store's
sync forever; the rest of the page still applies.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeGuard

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import ValidationError

from edge.clock import parse_iso_utc
from edge.context.weather import read_fields
from edge.decide.catalog import CATEGORIES, Offer
from edge.events import Purpose
from edge.identity.consent import minimal_profile
from edge.sources.rejections import WeatherReject
from edge.sync.wire import Change, ChangeKind

MAX_ID_CHARS: Final = 128
MAX_SOURCE_CHARS: Final = 64
MAX_PEM_CHARS: Final = 4096
MAX_REASON_CHARS: Final = 300  # the reference server's own cap on a rejection's reason
MAX_ORDER_REFERENCE_CHARS: Final = 32  # what a pickup screen shows, e.g. "A-1042"
MAX_ORDER_COUNTER_CHARS: Final = 64  # where to collect, e.g. "Click & collect, ground floor"
IDENTITY_KEY_BYTES: Final = 16
# A campaign exposure's SKUs: as many as an offer may list (the contract's Offer.skus), each as long.
MAX_CAMPAIGN_SKUS: Final = 64
MAX_SKU_CHARS: Final = 64
MAX_ROTATION_EXPONENT: Final = 15
_COUNTER_MODULUS: Final = 2**32
# A change's seq and an inventory quantity are stored in SQLite's signed 64-bit INTEGER: above this Python's
# int would not fit the column (OverflowError where it is written), so the parser refuses it first.
MAX_SQL_INT: Final = 2**63 - 1
# A store's weather is replaced by a newer reading or goes stale by itself (docs/context.md): never deleted.
_UPSERT_ONLY: Final = frozenset({ChangeKind.ERASURE, ChangeKind.WEATHER})


class AnswerError(ValueError):
    """The cloud's answer as a whole cannot be used; ``reason`` is a short stable label for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class ChangeError(ValueError):
    """One change does not validate; ``reason`` is its counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(slots=True)
class Page:
    changes: list[Change]
    cursor: str
    more: bool
    rejected: Counter[str] = field(default_factory=Counter)
    last_seq: int | None = None


@dataclass(slots=True, frozen=True)
class PushResult:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str]]  # (index in the batch, reason)


@dataclass(slots=True, frozen=True)
class FetchedProfile:
    shopper_id: str
    profile: dict[str, Any] | None
    consents: list[tuple[Purpose, bool, float, str]]  # (purpose, granted, at_wall, source)
    eid_key: dict[str, Any] | None


def is_id(value: object) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and value.isascii()
    )


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(value: object, what: str) -> float:
    if not isinstance(value, str):
        raise ChangeError("bad_time", f"{what} is not a string")
    try:
        at = parse_iso_utc(value)
    except ValueError as error:
        raise ChangeError("bad_time", f"{what}: {error}") from None
    if not math.isfinite(at):
        raise ChangeError("bad_time", what)
    return at


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChangeError("bad_data", f"{what} is not an object")
    return value


def parse_page(document: object) -> Page:
    """Validate one pulled page; raises AnswerError when the envelope is unusable."""
    if not isinstance(document, dict):
        raise AnswerError("bad_page", "not an object")
    changes, cursor, more = document.get("changes"), document.get("cursor"), document.get("more", False)
    if not isinstance(changes, list) or not isinstance(cursor, str) or not isinstance(more, bool):
        raise AnswerError("bad_page", 'expected {"changes": [...], "cursor": str, "more": bool}')
    if not cursor or len(cursor) > 256 or not cursor.isprintable():
        raise AnswerError("bad_page", "cursor must be 1..256 printable characters")
    page = Page(changes=[], cursor=cursor, more=more)
    last_seq: int | None = None
    for item in changes:
        seq = item.get("seq") if isinstance(item, dict) else None
        if not _int(seq) or not 0 <= seq <= MAX_SQL_INT:
            raise AnswerError("bad_page", "a change without an integer seq in 0..2^63-1")
        if last_seq is not None and seq <= last_seq:
            raise AnswerError("bad_page", f"seq {seq} does not increase (after {last_seq})")
        last_seq = seq
        try:
            page.changes.append(parse_change(item))
        except ChangeError as error:
            page.rejected[error.reason] += 1
    page.last_seq = last_seq
    return page


def parse_change(item: dict[str, Any]) -> Change:
    try:
        kind = ChangeKind(str(item.get("kind")))
    except ValueError:
        raise ChangeError("unknown_kind", str(item.get("kind"))[:40]) from None
    change_id, op = item.get("id"), item.get("op")
    if not is_id(change_id):
        raise ChangeError("bad_id")
    assert isinstance(change_id, str)
    if op not in ("upsert", "delete") or (op == "delete" and kind in _UPSERT_ONLY):
        raise ChangeError("bad_op", f"{op!r} for {kind}")
    at_wall = _time(item.get("at"), "at")
    data = _object(item.get("data", {}), "data")
    if op == "delete":
        # A consent delete names its purpose: the store no longer holds the shopper (their membership
        # lapsed, docs/sync.md "Which shoppers a store pulls"); it is not the shopper's choice.
        normalised: dict[str, Any] = (
            {"purpose": _purpose(data.get("purpose"))} if kind is ChangeKind.CONSENT else {}
        )
    else:
        normalised = _DATA[kind](data)
    if kind is ChangeKind.OFFER and op == "upsert" and normalised["offer"]["id"] != change_id:
        raise ChangeError("bad_offer", "the offer's id is not the change's id")
    return Change(item["seq"], kind, change_id, op, at_wall, normalised)


def _profile_data(data: dict[str, Any]) -> dict[str, Any]:
    # Only what the gateway reads is kept, so the replica never stores the rest (edge/identity/consent.py).
    return {"profile": minimal_profile(_object(data.get("profile"), "profile"))}


def _purpose(purpose: object) -> Purpose:
    try:
        return Purpose(str(purpose))
    except ValueError:
        raise ChangeError("unknown_purpose", str(purpose)[:40]) from None


def _consent_data(data: dict[str, Any]) -> dict[str, Any]:
    purpose, granted, source = data.get("purpose"), data.get("granted"), data.get("source", "cloud")
    known = _purpose(purpose)
    if not isinstance(granted, bool):
        raise ChangeError("bad_data", "granted is not a boolean")
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE_CHARS:
        raise ChangeError("bad_data", "source")
    return {
        "purpose": known,
        "granted": granted,
        "at_wall": _time(data.get("at"), "data.at"),
        "source": source,
    }


def _eid_key_data(data: dict[str, Any]) -> dict[str, Any]:
    return parse_eid_key(data)


def parse_eid_key(data: dict[str, Any]) -> dict[str, Any]:
    encoded, exponent, offset = (
        data.get("identity_key"),
        data.get("rotation_exponent"),
        data.get("clock_offset_s", 0),
    )
    try:
        key = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
    except (binascii.Error, ValueError):
        key = b""
    # The key is a secret: never echoed in an error.
    if len(key) != IDENTITY_KEY_BYTES:
        raise ChangeError("bad_eid_key", f"identity_key must be base64 of {IDENTITY_KEY_BYTES} bytes")
    if not _int(exponent) or not 0 <= exponent <= MAX_ROTATION_EXPONENT:
        raise ChangeError("bad_eid_key", "rotation_exponent must be 0..15")
    if not _int(offset) or not -_COUNTER_MODULUS < offset < _COUNTER_MODULUS:
        raise ChangeError("bad_eid_key", "clock_offset_s")
    return {"identity_key": key, "rotation_exponent": exponent, "clock_offset_s": offset}


def _token_key_data(data: dict[str, Any]) -> dict[str, Any]:
    pem = data.get("public_key_pem")
    if not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
        raise ChangeError("bad_token_key", "public_key_pem")
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ChangeError("bad_token_key", "not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ChangeError("bad_token_key", "not an Ed25519 key")
    return {"public_key_pem": pem}


def _offer_data(data: dict[str, Any]) -> dict[str, Any]:
    try:
        offer = Offer.model_validate(data)
    except ValidationError as error:
        raise ChangeError("bad_offer", str(error.errors()[0].get("msg", ""))[:120]) from None
    return {"offer": offer.model_dump(mode="json")}


def _inventory_data(data: dict[str, Any]) -> dict[str, Any]:
    available, quantity = data.get("available"), data.get("quantity")
    if not isinstance(available, bool):
        raise ChangeError("bad_inventory", "available is not a boolean")
    if quantity is not None and (not _int(quantity) or not 0 <= quantity <= MAX_SQL_INT):
        raise ChangeError("bad_inventory", "quantity must be an integer in 0..2^63-1 or null")
    return {"available": available, "quantity": quantity}


def _erasure_data(_data: dict[str, Any]) -> dict[str, Any]:
    return {}


def _short_text(value: object, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit and value.isprintable() else None


def _order_data(data: dict[str, Any]) -> dict[str, Any]:
    shopper, ready_at = data.get("shopper_id"), data.get("ready_at")
    reference = _short_text(data.get("reference"), MAX_ORDER_REFERENCE_CHARS)
    counter = _short_text(data.get("counter"), MAX_ORDER_COUNTER_CHARS)
    if not is_id(shopper):
        raise ChangeError("bad_order", "shopper_id")
    if reference is None or counter is None:
        raise ChangeError("bad_order", "reference (1-32) and counter (1-64) must be printable text")
    return {
        "shopper_id": shopper,
        "reference": reference,
        "counter": counter,
        "ready_wall": _time(ready_at, "data.ready_at"),
    }


def _campaign_exposure_data(data: dict[str, Any]) -> dict[str, Any]:
    """An online campaign the shopper saw: who, which campaign, when, and what it promoted (SKUs, category)."""
    shopper, campaign, skus, category = (
        data.get("shopper_id"),
        data.get("campaign_id"),
        data.get("skus"),
        data.get("category"),
    )
    if not is_id(shopper) or not is_id(campaign):
        raise ChangeError("bad_campaign_exposure", "shopper_id and campaign_id must be ids")
    if not isinstance(skus, list) or len(skus) > MAX_CAMPAIGN_SKUS:
        raise ChangeError("bad_campaign_exposure", f"skus must be a list of at most {MAX_CAMPAIGN_SKUS}")
    if not all(_short_text(sku, MAX_SKU_CHARS) is not None for sku in skus):
        raise ChangeError("bad_campaign_exposure", f"each sku must be 1-{MAX_SKU_CHARS} printable characters")
    if category is not None and category not in CATEGORIES:
        raise ChangeError("bad_campaign_exposure", "category is not one of the contract's categories")
    if not skus and category is None:
        raise ChangeError("bad_campaign_exposure", "neither skus nor a category: it could match no sale")
    return {
        "shopper_id": shopper,
        "campaign_id": campaign,
        "at_wall": _time(data.get("at"), "data.at"),
        "skus": tuple(dict.fromkeys(skus)),
        "category": category,
    }


def _weather_data(data: dict[str, Any]) -> dict[str, Any]:
    """The store's weather (docs/context.md): the sensor's fields and bounds, counted as ``bad_weather``."""
    reading = read_fields(data)
    if isinstance(reading, WeatherReject):
        raise ChangeError("bad_weather", str(reading))
    return {
        "temp_c": reading.temp_c,
        "precipitation": reading.precipitation,
        "forecast_max_c": reading.forecast_max_c,
        "observed_wall": reading.observed_wall,
    }


_DATA: Final = {
    ChangeKind.PROFILE: _profile_data,
    ChangeKind.CONSENT: _consent_data,
    ChangeKind.EID_KEY: _eid_key_data,
    ChangeKind.TOKEN_KEY: _token_key_data,
    ChangeKind.OFFER: _offer_data,
    ChangeKind.INVENTORY: _inventory_data,
    ChangeKind.ERASURE: _erasure_data,
    ChangeKind.ORDER: _order_data,
    ChangeKind.WEATHER: _weather_data,
    ChangeKind.CAMPAIGN_EXPOSURE: _campaign_exposure_data,
}


def parse_push_result(document: object, ids: Sequence[str]) -> PushResult:
    """Validate the answer to a push of the events ``ids`` (in batch order).

    A rejection is a verdict on one event, for which the gateway may give it up: so each must name a
    position in the batch once, carry that event's own id and a reason. An answer that does not is garbled
    (a proxy, a truncation, another API) and refused whole: the batch is sent again, nothing is given up.
    """
    if not isinstance(document, dict):
        raise AnswerError("bad_push_answer", "not an object")
    accepted, duplicates, rejected = (
        document.get("accepted"),
        document.get("duplicates"),
        document.get("rejected"),
    )
    if not (_int(accepted) and _int(duplicates) and isinstance(rejected, list)):
        raise AnswerError(
            "bad_push_answer", 'expected {"accepted": int, "duplicates": int, "rejected": [...]}'
        )
    reasons: dict[int, str] = {}
    for item in rejected:
        index = item.get("index") if isinstance(item, dict) else None
        if not _int(index) or not 0 <= index < len(ids) or index in reasons:
            raise AnswerError("bad_push_answer", "a rejection without a valid, distinct index")
        assert isinstance(item, dict)
        named, reason = item.get("id"), item.get("reason")
        if not isinstance(named, str) or named.lower() != ids[index].lower():
            raise AnswerError("bad_push_answer", f"rejection #{index} does not name the event sent there")
        if not isinstance(reason, str) or not reason.strip():
            raise AnswerError("bad_push_answer", f"rejection #{index} gives no reason")
        reasons[index] = reason[:MAX_REASON_CHARS]
    if accepted < 0 or duplicates < 0 or accepted + duplicates + len(reasons) != len(ids):
        raise AnswerError(
            "bad_push_answer",
            f"accepted {accepted} + duplicates {duplicates} + rejected {len(reasons)} != {len(ids)} sent",
        )
    return PushResult(accepted, duplicates, sorted(reasons.items()))


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date; None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text[:12]))  # more digits than a year in seconds is nonsense: the caller caps it
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: an HTTP-date is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_wall)


def parse_profile(document: object, shopper_id: str) -> FetchedProfile:
    """Validate a fetched profile; raises AnswerError if unusable (the decision then goes ahead without it)."""
    if not isinstance(document, dict) or document.get("shopper_id") != shopper_id:
        raise AnswerError("bad_profile", "not the profile asked for")
    profile = document.get("profile")
    if profile is not None and not isinstance(profile, dict):
        raise AnswerError("bad_profile", "profile is not an object")
    raw_consents = document.get("consents", {})
    if not isinstance(raw_consents, dict):
        raise AnswerError("bad_profile", "consents is not an object")
    consents: list[tuple[Purpose, bool, float, str]] = []
    for purpose, state in raw_consents.items():
        try:
            parsed = _consent_data({"purpose": purpose, **state} if isinstance(state, dict) else {})
        except ChangeError:
            continue  # an unknown purpose from a newer cloud: the others still count
        consents.append((parsed["purpose"], parsed["granted"], parsed["at_wall"], parsed["source"]))
    eid_key = document.get("eid_key")
    parsed_key: dict[str, Any] | None = None
    if isinstance(eid_key, dict):
        try:
            parsed_key = parse_eid_key(eid_key)
        except ChangeError:
            parsed_key = None
    return FetchedProfile(
        shopper_id, None if profile is None else minimal_profile(profile), consents, parsed_key
    )
