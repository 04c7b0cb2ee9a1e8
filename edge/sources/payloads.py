"""Pure parsers for inbound MQTT payloads (bytes -> typed record or a rejection reason); never raise."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Final, get_args

from edge.clock import parse_iso_utc
from edge.sources.rejections import (
    AckReject,
    AvailabilityReject,
    CheckinReject,
    Envelope,
    PosReject,
    RejectCounter,
)
from storecontract.offers import Category

__all__ = [
    "AckMessage",
    "Availability",
    "CheckinMessage",
    "RejectCounter",
    "Rejected",
    "TransactionItem",
    "TransactionMessage",
    "exposure_time",
    "is_id",
    "parse_ack",
    "parse_availability",
    "parse_checkin",
    "parse_transaction",
    "parse_utc",
]

CHECKIN_SOURCES: Final = frozenset({"app", "kiosk", "qr"})
# What a kiosk check-in may ask for besides service: the shopper's own data on that kiosk (docs/privacy.md).
CHECKIN_REQUESTS: Final = ("my_data",)
ACK_STATUSES: Final = frozenset({"shown", "failed"})
# Zone and display ids are topic segments; the same rule as the config's id pattern.
MAX_ID_LEN: Final = 64
# A JWT larger than this is not one of ours (ours are ~300 bytes); refuse before any crypto.
MAX_TOKEN_LEN: Final = 4096
# A POS transaction: ~70 bytes per item, so 200 items is about the 16 KiB payload cap anyway.
MAX_TXN_ITEMS: Final = 200
# A sale line's optional ``category``: one of the contract's (the offers' categories).
SALE_CATEGORIES: Final = frozenset(get_args(Category))
MAX_COLLECTED_ORDERS: Final = 16  # pickup orders handed over at one sale
# A scan-and-go cart sent with an app check-in: as many lines as a POS sale may have (its SKUs are ids too);
# how many of them a basket keeps is `[context] cart_max_items` (docs/context.md).
MAX_CART_ITEMS: Final = MAX_TXN_ITEMS
# Beyond these a quantity or an amount is junk or a POS bug, not a sale; they also keep every total
# finite (200 items x 1e6 x 1e12 is far below a float's range), so no sum can overflow.
MAX_ITEM_QTY: Final = 1_000_000
MAX_AMOUNT: Final = 1e12
# A sale dated outside these years (unix seconds) is a broken POS clock or junk.
MIN_TXN_WALL: Final = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TXN_WALL: Final = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_CENT: Final = Decimal("0.01")
# The one payload version there is. A payload without "v" is refused rather than read as 1: a sender that
# omits it would go on "working" when a v2 it cannot know about changes a field's meaning.
PAYLOAD_VERSION: Final = 1
# An ack's version is a manifest version (wall-clock ms, ~2^41 today) stored in SQLite's signed 64-bit
# INTEGER; above this Python's int would not fit the column (OverflowError inside the handler).
MAX_ACK_VERSION: Final = 2**63 - 1
# The longest ISO-8601 date-time we write or expect ("2026-11-22T10:15:03.123456789+00:00" is 35).
MAX_TS_CHARS: Final = 40
# RFC 3339 in UTC only: the contract says UTC, and an offset or a naive time is a sender's bug to see now.
# How far a display's clock may be from the gateway's before its shown_at is not believed: store devices
# without NTP drift by seconds a day; minutes off is a clock that is wrong, not one that drifts.
MAX_CLOCK_SKEW_S: Final = 300.0
_UTC_STAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|\+00:00)", re.ASCII
)


class Availability(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    CLEARED = "cleared"  # the retained availability was cleared: the display was removed


# A tuple, not a set: a JSON state may be a list or an object, which a set lookup would have to hash.
_STATES: Final = (Availability.ONLINE.value, Availability.OFFLINE.value)


@dataclass(slots=True, frozen=True)
class CheckinMessage:
    token: str
    zone: str
    source: str
    # Where the app waits for the answer: ``checkin/result/{reply_to}`` (an id the app chose).
    reply_to: str | None = None
    # A kiosk check-in may ask for the shopper's data (``"my_data"``) on the kiosk's own screen (``display``).
    request: str | None = None
    display: str | None = None
    # An app's scan-and-go cart: the SKUs in the shopper's hands (docs/context.md "Basket").
    cart: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class AckMessage:
    version: int
    decision_id: str | None
    status: str
    shown_at_wall: float | None


@dataclass(slots=True, frozen=True)
class TransactionItem:
    sku: str
    qty: int
    price: float
    # One of the contract's categories (attribution matches an offer's category by it), or None.
    category: str | None = None


@dataclass(slots=True, frozen=True)
class TransactionMessage:
    """A POS sale as received; ``token`` (the shopper's, optional) is kept out of ``repr`` and logs."""

    txn_id: str
    items: tuple[TransactionItem, ...]
    token: str | None = field(default=None, repr=False)
    total: float | None = None
    currency: str | None = None
    ts_wall: float | None = None
    # Pickup orders handed over at this sale (docs/pickup.md)
    collected_orders: tuple[str, ...] = ()
    # Lines whose ``category`` was not one of the contract's: kept without it (the caller counts them).
    bad_categories: int = 0

    @property
    def amount(self) -> float:
        """The POS's ``total`` if it gave one, else the sum of qty x price rounded half-up to cents."""
        if self.total is not None:
            return self.total
        cents = sum((Decimal(repr(item.price)) * item.qty for item in self.items), Decimal(0))
        return float(cents.quantize(_CENT, rounding=ROUND_HALF_UP))


@dataclass(slots=True, frozen=True)
class Rejected:
    """Why a payload was refused; ``reason`` is a member of its kind's enum (edge/sources/rejections.py)."""

    reason: str


def json_envelope(payload: bytes) -> dict[str, Any] | Rejected:
    """A JSON object with `"v": 1` (every payload of the contract), or why not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(Envelope.NOT_UTF8)
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and an integer literal past Python's 4300-digit limit.
        return Rejected(Envelope.NOT_JSON)
    if not isinstance(body, dict):
        return Rejected(Envelope.NOT_OBJECT)
    if "v" not in body:
        return Rejected(Envelope.MISSING_VERSION)
    version = body["v"]
    # Exactly the integer 1: True == 1 and 1.0 == 1 in Python, but neither is what the contract says.
    if type(version) is not int or version != PAYLOAD_VERSION:
        return Rejected(Envelope.UNSUPPORTED_VERSION)
    return body


def parse_utc(value: object) -> float | None:
    """An ISO-8601 / RFC 3339 UTC date-time (``Z`` or ``+00:00``) as unix seconds, else None.

    Only the form is judged, never the value against the gateway's clock: a display or kiosk without a
    real-time clock may be years off, and what is dated by it is judged where it is used (``shown_at``).
    """
    if not isinstance(value, str) or len(value) > MAX_TS_CHARS:
        return None
    match = _UTC_STAMP.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    try:
        stamp = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=UTC)
    except ValueError:  # 2026-02-30, 25:00, second 60 (a leap second)
        return None
    return stamp.timestamp()


def has_bad_ts(body: dict[str, Any]) -> bool:
    # null is the same as leaving it out, as for every optional field of the contract
    return body.get("ts") is not None and parse_utc(body["ts"]) is None


def _is_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LEN
        and value.replace("-", "").replace("_", "").replace(".", "").isalnum()
        and value.isascii()
    )


def is_id(value: object) -> bool:
    """An id that is safe as a topic segment and a label: 1..64 ASCII letters, digits, ``-``, ``_``, ``.``."""
    return _is_id(value)


def _amount(value: object) -> float | None:
    """A finite JSON number in 0..MAX_AMOUNT (a bool is not a number), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before any float conversion: a huge JSON integer must not overflow it.
    if not 0 <= value <= MAX_AMOUNT:  # NaN fails this too; inf is above the cap
        return None
    return float(value)


def parse_checkin(payload: bytes) -> CheckinMessage | Rejected:
    """A check-in (docs/mqtt.md): ``v`` exactly 1; ``ts`` optional, but a well-formed UTC time if present."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return body
    if has_bad_ts(body):
        return Rejected(CheckinReject.BAD_TS)
    token, zone, source = body.get("token"), body.get("zone"), body.get("source", "app")
    if not isinstance(token, str) or not token:
        return Rejected(CheckinReject.MISSING_TOKEN)
    if len(token) > MAX_TOKEN_LEN:
        return Rejected(CheckinReject.OVERSIZED_TOKEN)
    if not _is_id(zone):
        return Rejected(CheckinReject.BAD_ZONE)
    if not isinstance(source, str) or source not in CHECKIN_SOURCES:  # a list or object is unhashable
        return Rejected(CheckinReject.BAD_SOURCE)
    reply_to = body.get("reply_to")
    if reply_to is not None and not _is_id(reply_to):
        return Rejected(CheckinReject.BAD_REPLY_TO)
    request, display = body.get("request"), body.get("display")
    if request is not None and (request not in CHECKIN_REQUESTS or source != "kiosk" or not _is_id(display)):
        return Rejected(CheckinReject.BAD_REQUEST)
    # A bad cart refuses the check-in, as every other bad field does: the app is the one sender, and a cart
    # dropped quietly would hide its bug behind decisions that merely look worse.
    cart = body.get("cart")
    if cart is not None and (
        source != "app"
        or not isinstance(cart, list)
        or len(cart) > MAX_CART_ITEMS
        or not all(_is_id(sku) for sku in cart)
    ):
        return Rejected(CheckinReject.BAD_CART)
    assert isinstance(zone, str)
    return CheckinMessage(
        token=token,
        zone=zone,
        source=str(source),
        reply_to=reply_to,
        request=request,
        display=display,
        cart=tuple(cart or ()),
    )


def checkin_reply_to(payload: bytes) -> str | None:
    """The well-formed ``reply_to`` of a check-in the parser refused for another reason, if it has one."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return None
    reply_to = body.get("reply_to")
    return reply_to if isinstance(reply_to, str) and _is_id(reply_to) else None


def parse_ack(payload: bytes) -> AckMessage | Rejected:
    """A display ack (docs/mqtt.md). ``shown_at`` is judged for its form here; ``exposure_time`` bounds it."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return body
    if has_bad_ts(body):
        return Rejected(AckReject.BAD_TS)
    version, decision_id, status = body.get("version"), body.get("decision_id"), body.get("status")
    if type(version) is not int or not 0 < version <= MAX_ACK_VERSION:
        return Rejected(AckReject.BAD_VERSION)
    if decision_id is not None and (not isinstance(decision_id, str) or not 0 < len(decision_id) <= 64):
        return Rejected(AckReject.BAD_DECISION_ID)
    if not isinstance(status, str) or status not in ACK_STATUSES:  # a list or object is unhashable
        return Rejected(AckReject.BAD_STATUS)
    shown_at = body.get("shown_at")
    shown_wall: float | None = None
    if shown_at is not None:
        shown_wall = parse_utc(shown_at)
        if shown_wall is None:
            return Rejected(AckReject.BAD_SHOWN_AT)
    return AckMessage(version=version, decision_id=decision_id, status=str(status), shown_at_wall=shown_wall)


def exposure_time(shown_at_wall: float | None, decided_wall: float, acked_wall: float) -> tuple[float, bool]:
    """(when the exposure happened, whether the display's ``shown_at`` was replaced) on the gateway's clock.

    ``shown_at`` can be true from the decision (less the clock skew allowed) to the ack's arrival (plus it).
    Outside that the display's clock is wrong (a Pi without a real-time clock boots in 1970; a typo says
    9999): the exposure still happened, so it is kept, dated when its ack arrived, and the replacement is
    counted. Refusing it would lose a real exposure; storing 9999 would have the cloud refuse it forever.
    Without ``shown_at`` the ack's arrival is the time, as before (not counted: nothing was wrong).
    """
    if shown_at_wall is None:
        return acked_wall, False
    if decided_wall - MAX_CLOCK_SKEW_S <= shown_at_wall <= acked_wall + MAX_CLOCK_SKEW_S:
        return shown_at_wall, False
    return acked_wall, True


def _item(value: object) -> tuple[TransactionItem, bool] | Rejected:
    """A sale line, and whether it named a category that is not one of the contract's (dropped)."""
    if not isinstance(value, dict):
        return Rejected(PosReject.BAD_ITEM)
    sku, qty = value.get("sku"), value.get("qty")
    if not _is_id(sku):
        return Rejected(PosReject.BAD_SKU)
    if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= MAX_ITEM_QTY:
        return Rejected(PosReject.BAD_QTY)
    price = _amount(value.get("price"))
    if price is None:
        return Rejected(PosReject.BAD_PRICE)
    assert isinstance(sku, str)
    category = value.get("category")
    if category is not None and not (isinstance(category, str) and category in SALE_CATEGORIES):
        # The sale stays (a category the gateway does not know yet must not cost the store its sales); the
        # line only loses its category, and the caller counts it.
        return TransactionItem(sku=sku, qty=qty, price=price), True
    return TransactionItem(sku=sku, qty=qty, price=price, category=category), False


def parse_transaction(payload: bytes) -> TransactionMessage | Rejected:
    """A POS sale (``pos/{lane}/transaction``, docs/mqtt.md): strict, only the known fields are kept."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return body
    txn_id, token, raw_items = body.get("txn_id"), body.get("token"), body.get("items")
    if not _is_id(txn_id):
        return Rejected(PosReject.BAD_TXN_ID)
    assert isinstance(txn_id, str)
    # Only the type is checked here: a bad token string is the verifier's to judge (the sale is kept).
    if token is not None and not isinstance(token, str):
        return Rejected(PosReject.MALFORMED_TOKEN)
    token = token or None  # "" is an anonymous sale, like a missing token
    if not isinstance(raw_items, list) or not raw_items:
        return Rejected(PosReject.BAD_ITEMS)
    if len(raw_items) > MAX_TXN_ITEMS:
        return Rejected(PosReject.TOO_MANY_ITEMS)
    items: list[TransactionItem] = []
    bad_categories = 0
    for raw in raw_items:
        line = _item(raw)
        if isinstance(line, Rejected):
            return line
        item, bad_category = line
        bad_categories += bad_category
        items.append(item)
    total: float | None = None
    if body.get("total") is not None:
        total = _amount(body["total"])
        if total is None:
            return Rejected(PosReject.BAD_TOTAL)
    currency = body.get("currency")
    if currency is not None and not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
        and currency.isupper()
    ):
        return Rejected(PosReject.BAD_CURRENCY)
    ts_wall: float | None = None
    if body.get("ts") is not None:
        ts_wall = _timestamp(body["ts"])
        if ts_wall is None:
            return Rejected(PosReject.BAD_TS)
    collected = body.get("collected_orders", [])
    if (
        not isinstance(collected, list)
        or len(collected) > MAX_COLLECTED_ORDERS
        or not all(_is_id(order_id) for order_id in collected)
    ):
        return Rejected(PosReject.BAD_COLLECTED_ORDERS)
    return TransactionMessage(
        txn_id=txn_id,
        items=tuple(items),
        token=token,
        total=total,
        currency=currency,
        ts_wall=ts_wall,
        collected_orders=tuple(collected),
        bad_categories=bad_categories,
    )


def _timestamp(value: object) -> float | None:
    """An ISO-8601 timestamp between 2000 and 2100 as unix seconds, else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        wall = parse_iso_utc(value)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(wall) or not MIN_TXN_WALL <= wall < MAX_TXN_WALL:
        return None
    return wall


def parse_availability(payload: bytes) -> Availability | Rejected:
    """A display's LWT: plain ``online``/``offline`` (Home Assistant style) or ``{"state": ...}``.

    An empty payload is the retained message being cleared (``mosquitto_pub -r -n``): the display was
    removed, which is not an error (``Availability.CLEARED``). ``v`` is not required here: this is the
    display's own LWT in the Home Assistant convention, not one of the contract's JSON payloads.
    """
    if not payload:
        return Availability.CLEARED
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected(AvailabilityReject.NOT_UTF8)
    if text in _STATES:
        return Availability(text)
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return Rejected(AvailabilityReject.BAD_STATE)
    if (
        isinstance(body, dict)
        and body.get("state") in _STATES
        and body.get("v", PAYLOAD_VERSION) == PAYLOAD_VERSION
    ):
        return Availability(body["state"])
    return Rejected(AvailabilityReject.BAD_STATE)
