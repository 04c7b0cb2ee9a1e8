"""The request bodies and path values of the store and admin APIs (pydantic, ``extra="forbid"``); timestamps.

Bodies are first parsed by ``profilestore.jsonbody`` (so no NaN, NUL or duplicate key reaches here);
these models then check types and ranges. Timestamps travel as RFC 3339 and are kept as integer microseconds.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from profilestore.const import (
    MAX_CONSENT_AHEAD_S,
    MAX_DOCUMENT_BYTES,
    MAX_LABEL_CHARS,
    MAX_ORDER_COUNTER_CHARS,
    MAX_ORDER_REFERENCE_CHARS,
    MAX_PEM_CHARS,
    MAX_TOKEN_CHARS,
    MIN_TOKEN_CHARS,
)
from profilestore.jsonbody import dumps
from storecontract.offers import OFFER_ID_PATTERN as OFFER_ID_PATTERN  # noqa: PLC0414 - the contract's
from storecontract.purposes import Purpose

# Ids are path segments, SQL keys, log fields and (store ids) MQTT topic roots: no '/', '+', '#', spaces.
STORE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
SHOPPER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@~+=-]{0,127}$"
KID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:~+=-]{0,127}$"
LABEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
ORDER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TOKEN_PATTERN: Final = rf"^[A-Za-z0-9._~+/-]{{{MIN_TOKEN_CHARS},{MAX_TOKEN_CHARS}}}=*$"  # RFC 6750 b64token
UUID_PATTERN: Final = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
IDENTITY_KEY_BYTES: Final = 16  # Eddystone-EID identity keys (edge.identity.eid)
MAX_ROTATION_EXPONENT: Final = 15
CLOCK_OFFSET_BOUND: Final = 2**32  # |offset| < 2**32: the EID counter's modulus

_RFC3339: Final = re.compile(  # ASCII: \d must not match other scripts' digits, which int() would accept
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Accepted instants: from the epoch to the end of 9998, so every offset and rendering stays in range.
_MAX_US: Final = int((datetime(9999, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
_US_PER_S: Final = 1_000_000

PURPOSES: Final = tuple(purpose.value for purpose in Purpose)


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 date-time (an offset is required); ValueError if not one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time with an offset (e.g. 2026-11-01T10:00:00Z)")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    if match.group(8):
        zone = UTC
    else:
        sign = -1 if match.group(9) == "-" else 1
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("the offset is not a valid ±HH:MM")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    if second == 60:
        raise ValueError("leap seconds (:60) are not accepted")
    try:
        stamp = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from exc
    micros = (stamp - _EPOCH) // timedelta(microseconds=1)
    if not 0 <= micros < _MAX_US:
        raise ValueError("out of range (1970-01-01 to 9998-12-31)")
    return micros


def render_timestamp(micros: int) -> str:
    """RFC 3339 UTC with a Z: milliseconds when exact (as the gateway writes), else microseconds."""
    stamp = _EPOCH + timedelta(microseconds=micros)
    whole = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond % 1000 == 0:
        return f"{whole}.{stamp.microsecond // 1000:03d}Z"
    return f"{whole}.{stamp.microsecond:06d}Z"


def micros_of(wall_seconds: float) -> int:
    return round(wall_seconds * _US_PER_S)


def _timestamp(text: str) -> str:
    parse_timestamp(text)
    return text


def _document(value: dict[str, Any]) -> dict[str, Any]:
    if len(dumps(value).encode()) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"larger than {MAX_DOCUMENT_BYTES} bytes encoded")
    return value


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("printable characters only (no control characters, line breaks or tabs)")
    return text


Timestamp = Annotated[StrictStr, Field(max_length=40), AfterValidator(_timestamp)]
Document = Annotated[dict[str, Any], AfterValidator(_document)]
ShopperId = Annotated[StrictStr, Field(pattern=SHOPPER_ID_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----- store API -----
class EventIn(_Strict):
    """One pushed event; judged on its own, so a bad one is rejected without failing its batch."""

    id: Annotated[StrictStr, Field(pattern=UUID_PATTERN)]
    kind: Annotated[StrictStr, Field(pattern=LABEL_PATTERN)]
    event_class: Literal["privacy", "conversion", "telemetry"] = Field(alias="class")
    at: Timestamp
    shopper_id: ShopperId | None = None
    data: dict[str, Any]


# ----- admin API -----
class StorePut(_Strict):
    token: Annotated[StrictStr, Field(pattern=TOKEN_PATTERN, max_length=MAX_TOKEN_CHARS + 8)]


ShortText = Annotated[StrictStr, Field(min_length=1, max_length=MAX_LABEL_CHARS), AfterValidator(_printable)]


class Profile(BaseModel):
    """The profile keys a store is served (``storecontract.profiles.PROFILE_FIELDS``) are checked, with the
    shapes the gateway reads; any other key is kept as given, for the cloud's own use, and never served."""

    model_config = ConfigDict(extra="allow", frozen=True)

    affinity: dict[str, Annotated[float, Field(ge=0, le=1, strict=True)]] | None = None
    segment: StrictStr | None = None
    visits: Annotated[StrictInt, Field(ge=0)] | None = None
    preferences: dict[str, Any] | None = None
    device_preferences: dict[str, Any] | None = None
    accessibility: dict[str, Any] | None = None
    language: ShortText | None = None
    # The name the shopper chose for staff to use (never their legal name: that is never served).
    staff_display_name: ShortText | None = None
    sizes: dict[str, Any] | None = None
    interests: list[Any] | None = None


class ProfilePut(_Strict):
    profile: Document
    # Absent: the home store stays as it is; null: none (docs/sync-openapi.yaml, ProfilePut).
    home_store: Annotated[StrictStr, Field(pattern=STORE_ID_PATTERN)] | None = None

    @property
    def home_given(self) -> bool:
        return "home_store" in self.model_fields_set


class ConsentPut(_Strict):
    granted: StrictBool
    at: Timestamp | None = None
    source: Annotated[StrictStr, Field(pattern=LABEL_PATTERN)] = "cloud"


class EidKeyPut(_Strict):
    identity_key: Annotated[StrictStr, Field(max_length=64)]
    rotation_exponent: Annotated[StrictInt, Field(ge=0, le=MAX_ROTATION_EXPONENT)]
    clock_offset_s: Annotated[StrictInt, Field(gt=-CLOCK_OFFSET_BOUND, lt=CLOCK_OFFSET_BOUND)] = 0

    def key_bytes(self) -> bytes:
        try:
            raw = base64.b64decode(self.identity_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("identity_key: not standard base64") from exc
        if len(raw) != IDENTITY_KEY_BYTES:
            raise ValueError(f"identity_key: {len(raw)} bytes, expected {IDENTITY_KEY_BYTES}")
        return raw


class TokenKeyPut(_Strict):
    public_key_pem: Annotated[StrictStr, Field(max_length=MAX_PEM_CHARS)]

    def checked_pem(self) -> str:
        try:
            key = load_pem_public_key(self.public_key_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError("public_key_pem: not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise TypeError("public_key_pem: not an Ed25519 key")
        return self.public_key_pem


class InventoryPut(_Strict):
    available: StrictBool
    quantity: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None


class OrderPut(_Strict):
    """An online order ready for pickup at one store; ``reference`` and ``counter`` are shown on its screens."""

    store_id: Annotated[StrictStr, Field(pattern=STORE_ID_PATTERN)]
    shopper_id: ShopperId
    reference: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_ORDER_REFERENCE_CHARS), AfterValidator(_printable)
    ]
    counter: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_ORDER_COUNTER_CHARS), AfterValidator(_printable)
    ]
    ready_at: Timestamp | None = None


# The same bounds as the gateway's (edge/context/weather.py): past the coldest and hottest air ever measured,
# a value is a unit mistake (Fahrenheit, Kelvin), not weather.
MIN_TEMP_C: Final = -90.0
MAX_TEMP_C: Final = 60.0
Celsius = Annotated[float, Field(strict=True, ge=MIN_TEMP_C, le=MAX_TEMP_C, allow_inf_nan=False)]


class WeatherPut(_Strict):
    """A store's weather now and today's forecast (a `weather` change only that store pulls)."""

    temp_c: Celsius
    precipitation: StrictBool
    forecast_max_c: Celsius | None = None
    observed_at: Timestamp | None = None


def check_profile(profile: dict[str, Any]) -> None:
    """ValueError naming the key if a known profile key has the wrong shape."""
    try:
        Profile.model_validate(profile)
    except ValidationError as exc:
        raise ValueError(describe(exc, prefix="profile")) from exc


def consent_at(at: str | None, now_us: int) -> int:
    """The consent's time: given (not too far ahead of ``now_us``) or now."""
    if at is None:
        return now_us
    micros = parse_timestamp(at)
    if micros > now_us + round(MAX_CONSENT_AHEAD_S * _US_PER_S):
        raise ValueError(f"at: more than {MAX_CONSENT_AHEAD_S:.0f} s in the future")
    return micros


def describe(error: ValidationError, *, prefix: str = "", limit: int = 3) -> str:
    """pydantic errors as ``key.path: message``, the first ``limit`` of them."""
    lines = []
    for item in error.errors(include_url=False)[:limit]:
        parts = [prefix, *(str(part) for part in item["loc"])]
        path = ".".join(part for part in parts if part) or "(body)"
        message = item["msg"]
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    more = error.error_count() - limit
    if more > 0:
        lines.append(f"and {more} more")
    return "; ".join(lines)


# ----- cursors -----
CURSOR_PATTERN: Final = r"^[0-9a-f]{16}\.(?:0|[1-9][0-9]{0,18})$"
_MAX_SEQ: Final = 2**63 - 1


class CursorError(ValueError):
    """``gone`` False: not a cursor at all (400); True: a cursor of another database or from its future (410)."""

    def __init__(self, detail: str, *, gone: bool) -> None:
        super().__init__(detail)
        self.gone = gone


def encode_cursor(instance: str, seq: int) -> str:
    """The opaque cursor after ``seq``: the database's instance id and the number, ``<instance>.<seq>``."""
    return f"{instance}.{seq}"


def decode_cursor(text: str | None, instance: str) -> int:
    """The number after which to continue; absent or empty means from the beginning (0).

    The caller still checks the number against the database's last one (``cursor_ahead``).
    """
    if not text:
        return 0
    if re.fullmatch(CURSOR_PATTERN, text) is None:
        raise CursorError("not a cursor of this server", gone=False)
    owner, _, number = text.partition(".")
    seq = int(number)
    if seq > _MAX_SEQ:
        raise CursorError("not a cursor of this server", gone=False)
    if owner != instance:
        raise CursorError("the cursor belongs to another database: start again without one", gone=True)
    return seq


def cursor_ahead() -> CursorError:
    return CursorError("the cursor is ahead of this database: start again without one", gone=True)
