"""Pure parsers for inbound MQTT payloads (bytes -> typed record or a rejection reason); never raise."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from edge.clock import parse_iso_utc

log = logging.getLogger(__name__)

CHECKIN_SOURCES: Final = frozenset({"app", "kiosk", "qr"})
ACK_STATUSES: Final = frozenset({"shown", "failed"})
# Zone and display ids are topic segments; the same rule as the config's id pattern.
MAX_ID_LEN: Final = 64
# A JWT larger than this is not one of ours (ours are ~300 bytes); refuse before any crypto.
MAX_TOKEN_LEN: Final = 4096
# A POS transaction: ~70 bytes per item, so 200 items is about the 16 KiB payload cap anyway.
MAX_TXN_ITEMS: Final = 200
# Beyond these a quantity or an amount is junk or a POS bug, not a sale; they also keep every total
# finite (200 items x 1e6 x 1e12 is far below a float's range), so no sum can overflow.
MAX_ITEM_QTY: Final = 1_000_000
MAX_AMOUNT: Final = 1e12
# A sale dated outside these years (unix seconds) is a broken POS clock or junk.
MIN_TXN_WALL: Final = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TXN_WALL: Final = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_CENT: Final = Decimal("0.01")


@dataclass(slots=True, frozen=True)
class CheckinMessage:
    token: str
    zone: str
    source: str


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


@dataclass(slots=True, frozen=True)
class TransactionMessage:
    """A POS sale as received; ``token`` (the shopper's, optional) is kept out of ``repr`` and logs."""

    txn_id: str
    items: tuple[TransactionItem, ...]
    token: str | None = field(default=None, repr=False)
    total: float | None = None
    currency: str | None = None
    ts_wall: float | None = None

    @property
    def amount(self) -> float:
        """The POS's ``total`` if it gave one, else the sum of qty x price rounded half-up to cents."""
        if self.total is not None:
            return self.total
        cents = sum((Decimal(repr(item.price)) * item.qty for item in self.items), Decimal(0))
        return float(cents.quantize(_CENT, rounding=ROUND_HALF_UP))


@dataclass(slots=True, frozen=True)
class Rejected:
    """Why a payload was refused; ``reason`` is a short stable label used in counters."""

    reason: str


def _json_object(payload: bytes) -> dict[str, Any] | Rejected:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("not_utf8")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and an integer literal past Python's 4300-digit limit.
        return Rejected("not_json")
    if not isinstance(body, dict):
        return Rejected("not_object")
    if body.get("v", 1) != 1:
        return Rejected("unsupported_version")
    return body


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
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return body
    token, zone, source = body.get("token"), body.get("zone"), body.get("source", "app")
    if not isinstance(token, str) or not token:
        return Rejected("missing_token")
    if len(token) > MAX_TOKEN_LEN:
        return Rejected("oversized_token")
    if not _is_id(zone):
        return Rejected("bad_zone")
    if source not in CHECKIN_SOURCES:
        return Rejected("bad_source")
    assert isinstance(zone, str)
    return CheckinMessage(token=token, zone=zone, source=str(source))


def parse_ack(payload: bytes) -> AckMessage | Rejected:
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return body
    version, decision_id, status = body.get("version"), body.get("decision_id"), body.get("status")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return Rejected("bad_version")
    if decision_id is not None and (not isinstance(decision_id, str) or not 0 < len(decision_id) <= 64):
        return Rejected("bad_decision_id")
    if status not in ACK_STATUSES:
        return Rejected("bad_status")
    shown_at = body.get("shown_at")
    shown_wall: float | None = None
    if shown_at is not None:
        if not isinstance(shown_at, str):
            return Rejected("bad_shown_at")
        try:
            shown_wall = parse_iso_utc(shown_at)
        except (ValueError, OverflowError):
            return Rejected("bad_shown_at")
    return AckMessage(version=version, decision_id=decision_id, status=str(status), shown_at_wall=shown_wall)


def _item(value: object) -> TransactionItem | Rejected:
    if not isinstance(value, dict):
        return Rejected("bad_item")
    sku, qty = value.get("sku"), value.get("qty")
    if not _is_id(sku):
        return Rejected("bad_sku")
    if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= MAX_ITEM_QTY:
        return Rejected("bad_qty")
    price = _amount(value.get("price"))
    if price is None:
        return Rejected("bad_price")
    assert isinstance(sku, str)
    return TransactionItem(sku=sku, qty=qty, price=price)


def parse_transaction(payload: bytes) -> TransactionMessage | Rejected:
    """A POS sale (``pos/{lane}/transaction``, docs/mqtt.md): strict, only the known fields are kept."""
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return body
    txn_id, token, raw_items = body.get("txn_id"), body.get("token"), body.get("items")
    if not _is_id(txn_id):
        return Rejected("bad_txn_id")
    assert isinstance(txn_id, str)
    # Only the type is checked here: a bad token string is the verifier's to judge (the sale is kept).
    if token is not None and not isinstance(token, str):
        return Rejected("malformed_token")
    token = token or None  # "" is an anonymous sale, like a missing token
    if not isinstance(raw_items, list) or not raw_items:
        return Rejected("bad_items")
    if len(raw_items) > MAX_TXN_ITEMS:
        return Rejected("too_many_items")
    items: list[TransactionItem] = []
    for raw in raw_items:
        item = _item(raw)
        if isinstance(item, Rejected):
            return item
        items.append(item)
    total: float | None = None
    if body.get("total") is not None:
        total = _amount(body["total"])
        if total is None:
            return Rejected("bad_total")
    currency = body.get("currency")
    if currency is not None and not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
        and currency.isupper()
    ):
        return Rejected("bad_currency")
    ts_wall: float | None = None
    if body.get("ts") is not None:
        ts_wall = _timestamp(body["ts"])
        if ts_wall is None:
            return Rejected("bad_ts")
    return TransactionMessage(
        txn_id=txn_id,
        items=tuple(items),
        token=token,
        total=total,
        currency=currency,
        ts_wall=ts_wall,
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


def parse_availability(payload: bytes) -> bool | Rejected:
    """A display's LWT: plain ``online``/``offline`` (Home Assistant style) or ``{"state": ...}``."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected("not_utf8")
    if text in ("online", "offline"):
        return text == "online"
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return Rejected("bad_state")
    state = body.get("state")
    if state == "online":
        return True
    if state == "offline":
        return False
    return Rejected("bad_state")


class RejectCounter:
    """Counts rejections by (kind, reason) and logs only the first of each kind, so junk cannot flood logs."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def reject(self, kind: str, reason: str, topic: str) -> None:
        first_of_kind = not any(key[0] == kind for key in self.counts)
        self.counts[(kind, reason)] += 1
        if first_of_kind:
            log.warning(
                "rejected %s payload on %s: %s (further %s rejections are only counted)",
                kind,
                topic,
                reason,
                kind,
            )

    def as_dict(self) -> dict[str, int]:
        return {f"{kind}.{reason}": count for (kind, reason), count in sorted(self.counts.items())}
