"""Why an inbound message is refused: one ``StrEnum`` of reasons per kind of message, what each means, and the
counter that ``gateway/health`` shows them from. docs/mqtt.md's rejection tables are generated from here.

A reason's value is its counter name: ``drops.rejected["<kind>.<reason>"]`` in ``gateway/health`` and
``edge_rejected_total{kind,reason}`` on ``/metrics``. Renaming a value breaks dashboards: add, do not rename.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from edge.identity.tokens import RejectReason as TokenReason

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """The kinds of inbound message, as the first part of a rejection's health key."""

    CHECKIN = "checkin"
    ACK = "ack"
    AVAILABILITY = "availability"
    POS = "pos"
    ESPRESENSE = "espresense"
    DEVICE = "device"
    OVERRIDE = "override"
    STAFF_ACK = "staff_ack"
    PRIVACY = "privacy"
    PRIVACY_REQUEST = "privacy_request"
    WEATHER = "weather"


class Envelope(StrEnum):
    """Refusals of a JSON payload's envelope, before its own fields (check-in, ack, POS)."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_VERSION = "missing_version"
    UNSUPPORTED_VERSION = "unsupported_version"


class CheckinReject(StrEnum):
    MISSING_TOKEN = "missing_token"  # noqa: S105 - a reason's name, not a secret
    OVERSIZED_TOKEN = "oversized_token"  # noqa: S105 - a reason's name, not a secret
    BAD_ZONE = "bad_zone"
    BAD_SOURCE = "bad_source"
    BAD_REPLY_TO = "bad_reply_to"
    BAD_REQUEST = "bad_request"
    BAD_CART = "bad_cart"
    BAD_TS = "bad_ts"
    UNKNOWN_ZONE = "unknown_zone"
    NO_CONSENT = "no_consent"
    ERASED = "erased"
    REPLAYED_ON_DISK = "replayed_on_disk"
    CLOCK_BEHIND = "clock_behind"
    BAD_PAIRING = "bad_pairing"


class AckReject(StrEnum):
    BAD_TS = "bad_ts"
    BAD_VERSION = "bad_version"
    BAD_DECISION_ID = "bad_decision_id"
    BAD_STATUS = "bad_status"
    BAD_SHOWN_AT = "bad_shown_at"
    UNKNOWN_DISPLAY = "unknown_display"
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_DECISION = "unknown_decision"
    DUPLICATE = "duplicate"


class AvailabilityReject(StrEnum):
    NOT_UTF8 = "not_utf8"
    BAD_STATE = "bad_state"
    UNKNOWN_DISPLAY = "unknown_display"


class PosReject(StrEnum):
    BAD_LANE = "bad_lane"
    BAD_TXN_ID = "bad_txn_id"
    MALFORMED_TOKEN = "malformed_token"  # noqa: S105 - a reason's name, not a secret
    BAD_ITEMS = "bad_items"
    TOO_MANY_ITEMS = "too_many_items"
    BAD_ITEM = "bad_item"
    BAD_SKU = "bad_sku"
    BAD_QTY = "bad_qty"
    BAD_PRICE = "bad_price"
    BAD_TOTAL = "bad_total"
    BAD_CURRENCY = "bad_currency"
    BAD_TS = "bad_ts"
    BAD_COLLECTED_ORDERS = "bad_collected_orders"
    BAD_CATEGORY = "bad_category"
    BAD_TOKEN = "bad_token"  # noqa: S105 - a reason's name, not a secret
    REPLAYED_TOKEN = "replayed_token"  # noqa: S105 - a reason's name, not a secret
    REPLAYED_ON_DISK = "replayed_on_disk"
    CLOCK_BEHIND = "clock_behind"


class EspresenseReject(StrEnum):
    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_RSSI = "bad_rssi"
    BAD_EID = "bad_eid"


class DeviceReject(StrEnum):
    """A smart device's own state or availability message that cannot be read (never acted on)."""

    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_VALUE = "bad_value"
    BAD_AVAILABILITY = "bad_availability"


class OverrideReject(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    BAD_VALUES = "bad_values"
    UNKNOWN_CAPABILITY = "unknown_capability"
    OUT_OF_BOUNDS = "out_of_bounds"
    BAD_DURATION = "bad_duration"


class StaffAckReject(StrEnum):
    UNKNOWN_TEAM = "unknown_team"
    BAD_NOTICE_ID = "bad_notice_id"
    BAD_ACTION = "bad_action"
    UNKNOWN_NOTICE = "unknown_notice"
    NO_ORDER = "no_order"


class PrivacyReject(StrEnum):
    """A shopper's privacy action at a touchpoint (``privacy/action``), refused."""

    MISSING_TOKEN = "missing_token"  # noqa: S105 - a reason's name, not a secret
    OVERSIZED_TOKEN = "oversized_token"  # noqa: S105 - a reason's name, not a secret
    BAD_ACTION = "bad_action"
    BAD_PURPOSE = "bad_purpose"
    BAD_GRANTED = "bad_granted"
    BAD_SOURCE = "bad_source"
    BAD_REPLY_TO = "bad_reply_to"
    BAD_TS = "bad_ts"
    CLOCK_BEHIND = "clock_behind"


class WeatherReject(StrEnum):
    """A local weather sensor's reading (``context/weather``), refused (the cloud's are sync rejections)."""

    BAD_TS = "bad_ts"
    BAD_TEMP = "bad_temp"
    BAD_PRECIPITATION = "bad_precipitation"
    BAD_FORECAST = "bad_forecast"
    BAD_OBSERVED_AT = "bad_observed_at"
    FUTURE = "future"


class PrivacyRequestReject(StrEnum):
    """The cloud's signed request for a shopper's export (``privacy/request``), refused."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    BAD_ALGORITHM = "bad_algorithm"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_STORE = "wrong_store"
    EXPIRED = "expired"
    BAD_CLAIMS = "bad_claims"


_ENVELOPE: Final[Mapping[str, str]] = {
    Envelope.NOT_UTF8: "the payload is not UTF-8",
    Envelope.NOT_JSON: "not JSON (or nested beyond what the parser takes)",
    Envelope.NOT_OBJECT: "JSON, but not an object",
    Envelope.MISSING_VERSION: 'no `"v"`: every payload carries `"v": 1`',
    Envelope.UNSUPPORTED_VERSION: '`"v"` is not the integer `1` (`2`, `"1"`, `1.0` and `true` are refused)',
}
# A shopper's token refused (check-ins and privacy actions alike); MALFORMED, OVERSIZED and REPLAYED say more
# per kind.
_TOKEN: Final[Mapping[str, str]] = {
    TokenReason.BAD_SIGNATURE: "the token's signature does not verify with the cloud's keys",
    TokenReason.UNKNOWN_KEY: "the token's `kid` names no key the gateway holds",
    TokenReason.EXPIRED: "the token's `exp` has passed (beyond the leeway)",
    TokenReason.NOT_YET_VALID: "the token's `nbf` / `iat` is in the future (beyond the leeway)",
    TokenReason.WRONG_AUDIENCE: '`aud` is neither this store\'s id nor `"stores"`',
    TokenReason.MISSING_CLAIM: "`sub`, `exp`, `jti` or `aud` is missing",
    TokenReason.TOO_LONG_LIVED: "`exp` is more than `identity.max_token_lifetime_s` after `iat`",
}
_TS = "`ts` present but not an ISO-8601 UTC date-time (`Z` or `+00:00`, at most 40 characters)"
_TEMP = "a number of degrees Celsius from -90 to 60 (a bool is not a number)"

# What each reason means, by kind, in the order docs/mqtt.md lists them. Every member of the kind's enums
# must be here (tests/sources/test_rejections.py), so the documentation cannot fall behind the code.
MEANINGS: Final[Mapping[Kind, Mapping[str, str]]] = {
    Kind.CHECKIN: {
        **_ENVELOPE,
        CheckinReject.BAD_TS: _TS,
        CheckinReject.MISSING_TOKEN: "no `token`, or not a non-empty string",
        CheckinReject.OVERSIZED_TOKEN: "`token` longer than 4,096 characters (ours are ~300)",
        CheckinReject.BAD_ZONE: "`zone` is not an id (1-64 ASCII letters, digits, `-`, `_`, `.`)",
        CheckinReject.BAD_SOURCE: "`source` is not `app`, `kiosk` or `qr`",
        CheckinReject.BAD_REPLY_TO: "`reply_to` present but not an id (1-64 ASCII letters, digits, `-`, `_`, `.`)",
        CheckinReject.BAD_REQUEST: '`request` present but not `"my_data"`, or not from a `kiosk` naming its '
        "`display` (an id)",
        CheckinReject.BAD_CART: "`cart` present but not a list of at most 200 SKUs (ids, as a POS sale's), or "
        "not from the `app`",
        CheckinReject.UNKNOWN_ZONE: "`zone` is not one of the store's configured zones",
        CheckinReject.BAD_PAIRING: "a kiosk pairing that does not hold: the token's `display` claim is not a kiosk "
        "of the check-in's `zone`, its `pairing` claim is not that kiosk's current or previous code (wrong, "
        "expired, used or another kiosk's), a `pairing` without `display`, or a `display` field naming another kiosk",
        TokenReason.MALFORMED: "the token is not a JWT we can read, or its claims have the wrong types",
        TokenReason.OVERSIZED: "the token is too long (a QR check-in's; an MQTT one is `oversized_token`)",
        **_TOKEN,
        TokenReason.REPLAYED: "the token's `jti` was already used (single use until it expires); a message the "
        "broker delivers again after a crash (MQTT DUP) is not a replay: counted as `checkins_redelivered`",
        CheckinReject.REPLAYED_ON_DISK: "the `jti` was unknown in memory but already claimed in the ledger "
        "(a clock step); refused",
        CheckinReject.NO_CONSENT: "a `qr` check-in from a shopper without the `camera_checkin` consent",
        CheckinReject.ERASED: "the token's shopper was erased here and has granted nothing since (their token "
        "may still be valid for minutes)",
        CheckinReject.CLOCK_BEHIND: "the wall clock is behind a purge of token claims (a Pi restarted with an "
        "old time): the token may have been used, and its claim forgotten; refused (`clock_behind` alert)",
    },
    Kind.ACK: {
        **_ENVELOPE,
        AckReject.BAD_TS: _TS,
        AckReject.BAD_VERSION: "`version` is not an integer in 1 .. 2^63-1 (what SQLite's INTEGER holds)",
        AckReject.BAD_DECISION_ID: "`decision_id` is neither null nor a string of 1-64 characters",
        AckReject.BAD_STATUS: '`status` is not `"shown"` or `"failed"`',
        AckReject.BAD_SHOWN_AT: "`shown_at` present but not an ISO-8601 UTC date-time",
        AckReject.UNKNOWN_DISPLAY: "the topic's display is not configured",
        AckReject.VERSION_MISMATCH: "`version` is not the one the gateway sent with that `decision_id`",
        AckReject.UNKNOWN_DECISION: "`decision_id` was never sent to this display (or is past retention)",
        AckReject.DUPLICATE: "the exposure is already recorded (a repeated ack; stored once)",
    },
    Kind.AVAILABILITY: {
        AvailabilityReject.NOT_UTF8: "the payload is not UTF-8",
        AvailabilityReject.BAD_STATE: 'neither `online`/`offline` nor `{"state": "online"|"offline"}`',
        AvailabilityReject.UNKNOWN_DISPLAY: "the topic's display is not configured",
    },
    Kind.POS: {
        **_ENVELOPE,
        PosReject.BAD_LANE: "the topic's `{lane}` is not an id",
        PosReject.BAD_TXN_ID: "`txn_id` is missing or not an id",
        PosReject.MALFORMED_TOKEN: "`token` is present but not a string",
        PosReject.BAD_ITEMS: "`items` is missing, not a list, or empty",
        PosReject.TOO_MANY_ITEMS: "more than 200 items",
        PosReject.BAD_ITEM: "an item is not an object",
        PosReject.BAD_SKU: "an item's `sku` is not an id",
        PosReject.BAD_QTY: "an item's `qty` is not a whole number 1-1,000,000",
        PosReject.BAD_PRICE: "an item's `price` is not a number 0-10^12",
        PosReject.BAD_TOTAL: "`total` is not a number 0-10^12",
        PosReject.BAD_CURRENCY: "`currency` is not three upper-case letters",
        PosReject.BAD_TS: "`ts` is not an ISO-8601 date-time in the years 2000-2099",
        PosReject.BAD_COLLECTED_ORDERS: "`collected_orders` is not a list of at most 16 order ids",
        PosReject.BAD_CATEGORY: "an item's `category` is not one of the offers' categories; **the sale is kept**, "
        "that line without a category (counted once per sale)",
        PosReject.BAD_TOKEN: "the token was refused (reason in `tokens.rejected`); **the sale is kept**, "
        "anonymous",
        PosReject.REPLAYED_TOKEN: "the token was already used; **the sale is kept**, anonymous",
        PosReject.REPLAYED_ON_DISK: "the token's `jti` was already claimed in the ledger; the sale is kept",
        PosReject.CLOCK_BEHIND: "the wall clock is behind a purge of token claims: the token may have been used; "
        "**the sale is kept**, anonymous",
    },
    Kind.ESPRESENSE: {
        EspresenseReject.BAD_TOPIC: "not `{prefix}/devices/{id}/{room}` with a room of at most 64 characters",
        EspresenseReject.NOT_JSON: "not UTF-8 JSON (or an integer literal beyond Python's 4,300 digits)",
        EspresenseReject.NOT_OBJECT: "JSON, but not an object",
        EspresenseReject.BAD_RSSI: "`rssi` missing, or not a JSON number in -127..20 (a bool, a string, NaN, "
        "±inf or a 401-digit integer is refused, never converted); the report's other fields are never read",
        EspresenseReject.BAD_EID: "an `eid:` id that is not 16 hex digits",
    },
    Kind.DEVICE: {
        DeviceReject.OVERSIZED: "a state message larger than 16 KiB",
        DeviceReject.NOT_JSON: "a state message that is not JSON (or nested beyond what the parser takes)",
        DeviceReject.NOT_OBJECT: "a state message that is JSON but not an object",
        DeviceReject.BAD_VALUE: "a value the gateway sets that is not a finite number within ±1e15 (or not "
        "`ON`/`OFF`), or a colour temperature below 1 mired",
        DeviceReject.BAD_AVAILABILITY: "availability that is neither `online`/`offline` (Tasmota: "
        '`Online`/`Offline`) nor JSON `{"state": ...}` with one of them',
    },
    Kind.OVERRIDE: {
        **_ENVELOPE,
        OverrideReject.UNKNOWN_DEVICE: "the topic names no configured device",
        OverrideReject.BAD_VALUES: "`values` is not an object",
        OverrideReject.UNKNOWN_CAPABILITY: "`values` names a capability the device does not have",
        OverrideReject.OUT_OF_BOUNDS: "a number outside the capability's `min`/`max`, not a number where one "
        "is wanted, or a choice not among its `values`",
        OverrideReject.BAD_DURATION: "`for_s` is not a number of seconds from 0 (clear) to 14,400 (4 h)",
    },
    Kind.STAFF_ACK: {
        **_ENVELOPE,
        StaffAckReject.UNKNOWN_TEAM: "the topic names no team of `[staff] teams`",
        StaffAckReject.BAD_NOTICE_ID: "`notice_id` is not an id (1-64 ASCII letters, digits, `-`, `_`, `.`)",
        StaffAckReject.BAD_ACTION: '`action` is not `"assisting"`, `"dismissed"` or `"collected"`',
        StaffAckReject.NO_ORDER: '`"collected"` for a notice whose shopper has no open pickup order',
        StaffAckReject.UNKNOWN_NOTICE: "no open notice of this team has this id (withdrawn, from before a "
        "restart, or another team's)",
    },
    Kind.PRIVACY: {
        **_ENVELOPE,
        PrivacyReject.BAD_TS: _TS,
        PrivacyReject.MISSING_TOKEN: "no `token`, or not a non-empty string",
        PrivacyReject.OVERSIZED_TOKEN: "`token` longer than 4,096 characters",
        PrivacyReject.BAD_ACTION: '`action` is not `"consent"` or `"erase"`',
        PrivacyReject.BAD_PURPOSE: "`purpose` (for `consent`) is not one of the consent purposes",
        PrivacyReject.BAD_GRANTED: "`granted` (for `consent`) is not `true` or `false`",
        PrivacyReject.BAD_SOURCE: "`source` is not `kiosk`, `staff`, `till` or `app`",
        PrivacyReject.BAD_REPLY_TO: "`reply_to` present but not an id (1-64 ASCII letters, digits, `-`, `_`, `.`)",
        PrivacyReject.CLOCK_BEHIND: "the wall clock is behind a purge of token claims: the token may have been used",
        TokenReason.MALFORMED: "the token is not a JWT we can read, or its claims have the wrong types",
        TokenReason.OVERSIZED: "the token is too long",
        **_TOKEN,
        TokenReason.REPLAYED: "the token's `jti` was already used (a broker's redelivery of a message that was "
        "applied is accepted again, not counted)",
    },
    Kind.PRIVACY_REQUEST: {
        PrivacyRequestReject.TOO_LARGE: "larger than 16 KiB",
        PrivacyRequestReject.MALFORMED: "not UTF-8 text holding a compact JWS",
        PrivacyRequestReject.BAD_ALGORITHM: "not signed with EdDSA (`none` and every other algorithm refused)",
        PrivacyRequestReject.UNKNOWN_KEY: "its `kid` names none of the cloud's token keys this store holds",
        PrivacyRequestReject.BAD_SIGNATURE: "the signature does not verify",
        PrivacyRequestReject.WRONG_STORE: "`aud` does not name this store",
        PrivacyRequestReject.EXPIRED: "`exp` has passed (beyond the leeway), or `iat` is in the future",
        PrivacyRequestReject.BAD_CLAIMS: '`kind` is not `"export"`, or `request_id`, `sub`, `iat` or `exp` is '
        "missing or malformed (`iat`/`exp`: a JSON number of unix seconds in 0..4102444800, not NaN or ±inf)",
    },
    Kind.WEATHER: {
        **_ENVELOPE,
        WeatherReject.BAD_TS: _TS,
        WeatherReject.BAD_TEMP: f"`temp_c` is not {_TEMP}",
        WeatherReject.BAD_PRECIPITATION: "`precipitation` is not `true` or `false`",
        WeatherReject.BAD_FORECAST: f"`forecast_max_c` present but not {_TEMP}",
        WeatherReject.BAD_OBSERVED_AT: "`observed_at` missing or not an ISO-8601 UTC date-time",
        WeatherReject.FUTURE: "`observed_at` more than 300 s ahead of the gateway's clock",
    },
}

# The enums whose members make up each kind's reasons (the drift test checks MEANINGS against these).
REASONS: Final[Mapping[Kind, tuple[type[StrEnum], ...]]] = {
    Kind.CHECKIN: (Envelope, CheckinReject, TokenReason),
    Kind.ACK: (Envelope, AckReject),
    Kind.AVAILABILITY: (AvailabilityReject,),
    Kind.POS: (Envelope, PosReject),
    Kind.ESPRESENSE: (EspresenseReject,),
    Kind.DEVICE: (DeviceReject,),
    Kind.OVERRIDE: (Envelope, OverrideReject),
    Kind.STAFF_ACK: (Envelope, StaffAckReject),
    Kind.PRIVACY: (Envelope, PrivacyReject, TokenReason),
    Kind.PRIVACY_REQUEST: (PrivacyRequestReject,),
    Kind.WEATHER: (Envelope, WeatherReject),
}


def reasons_of(kind: Kind) -> frozenset[str]:
    """Every reason a message of ``kind`` can be counted under."""
    return frozenset(member.value for enum in REASONS[kind] for member in enum)


class RejectedInputError(ValueError):
    """An inbound message refused for ``reason`` (a member of its kind's enum); the text says more."""

    def __init__(self, reason: StrEnum, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class RejectCounter:
    """Counts rejections by (kind, reason) and logs only the first of each kind, so junk cannot flood logs.

    ``where`` is what the log line may name: the topic, or a redacted one where a topic segment identifies
    somebody (an ESPresense device id can be a phone's address: ``espresense.loggable_topic``).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._logged: set[str] = set()

    def reject(self, kind: str, reason: str, where: str) -> None:
        self.counts[(str(kind), str(reason))] += 1
        if kind not in self._logged:
            self._logged.add(str(kind))
            log.warning(
                "rejected %s payload on %s: %s (further %s rejections are only counted)",
                kind,
                where,
                reason,
                kind,
            )

    def as_dict(self) -> dict[str, int]:
        return {f"{kind}.{reason}": count for (kind, reason), count in sorted(self.counts.items())}


# ----- docs/mqtt.md ------------------------------------------------------------------------------------------

_TITLES: Final[Mapping[Kind, str]] = {
    Kind.CHECKIN: "check-in (`…/checkin`; also QR check-ins seen by a camera)",
    Kind.ACK: "display ack (`…/display/{id}/ack`)",
    Kind.AVAILABILITY: "display availability (`…/display/{id}/availability`)",
    Kind.POS: "POS transaction (`…/pos/{lane}/transaction`)",
    Kind.ESPRESENSE: "ESPresense report (`espresense/devices/{id}/{room}`)",
    Kind.DEVICE: "a smart device's state or availability (its adapter's topics, docs/devices.md)",
    Kind.OVERRIDE: "staff override (`…/device/{id}/override`)",
    Kind.STAFF_ACK: "staff answer to a notice (`…/staff/{team}/ack`)",
    Kind.PRIVACY: "a shopper's privacy action at a touchpoint (`…/privacy/action`)",
    Kind.PRIVACY_REQUEST: "the cloud's signed request for a shopper's export (`…/privacy/request`)",
    Kind.WEATHER: "a local weather sensor's reading (`…/context/weather`)",
}


def rejection_tables() -> str:
    """The markdown docs/mqtt.md carries between its ``rejections`` markers (tests fail if they differ)."""
    parts = []
    for kind in Kind:
        parts.append(f"**{_TITLES[kind]}**\n")
        parts.append("| `drops.rejected` key | `edge_rejected_total` labels | counted when |")
        parts.append("|---|---|---|")
        for reason, meaning in MEANINGS[kind].items():
            cell = meaning.replace("|", "\\|")  # a pipe would end the table cell
            parts.append(f'| `{kind}.{reason}` | `kind="{kind}",reason="{reason}"` | {cell} |')
        parts.append("")
    return "\n".join(parts)
