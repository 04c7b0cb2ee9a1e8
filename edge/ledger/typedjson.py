"""JSON values as tagged binary, and back to exactly the compact text json.dumps makes of them.

UUIDs, long hex ids and millisecond timestamps are packed (a timestamp as its distance from the event's own
time), and an object whose keys are one of ``SHAPES`` is stored without them; everything else keeps its
text. The outbox stores events this way (edge/ledger/eventcodec.py); every tag and shape is on disk in some
store: never change or reuse one, append.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, cast

# Value tags.
_NULL, _FALSE, _TRUE, _INT, _FLOAT, _STR, _UUID, _HEX, _TIME, _LIST, _OBJECT, _SHAPE = range(12)

# The key lists of the events the gateway writes (docs/ledger.md "Outbox"), by their index in this tuple.
# An object with exactly these keys in this order is stored without them. Append only.
SHAPES: Final[tuple[tuple[str, ...], ...]] = (
    (
        "decision_id",
        "display_id",
        "zone",
        "offer_id",
        "template",
        "model_version",
        "propensity",
        "explored",
        "holdout",
        "personalized",
    ),
    ("decision_id", "display_id", "version", "shown_at", "acked_at"),
    ("purpose", "granted", "at", "source"),
    ("txn_id", "lane", "items", "total"),
    ("txn_id", "lane", "items", "total", "currency"),
    ("sku", "qty", "price"),
)
_SHAPE_IDS: Final = {keys: index for index, keys in enumerate(SHAPES)}
# What json.dumps(ensure_ascii=False) writes a string with (the C function when there is one).
encode_str: Callable[[str], str] = json.encoder.encode_basestring
# What goes before each value of a shape: '{"a":', then ',"b":' ...
_SHAPE_KEYS: Final = tuple(
    tuple(("," if index else "{") + encode_str(key) + ":" for index, key in enumerate(keys))
    for keys in SHAPES
)

UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# At least 8 bytes: shorter hex-looking words ("cafe", "beef") are text, and deflate does better on them.
_HEX_TEXT: Final = re.compile(r"(?:[0-9a-f]{2}){8,255}")
_ISO_MS: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class CodecError(ValueError):
    """Stored bytes this code cannot read (a codec or tag from a newer gateway, or damage)."""


def wall_ms(at_wall: float) -> int:
    """The unix milliseconds that ``iso_utc(at_wall)`` shows (it rounds to microseconds, then truncates)."""
    return (datetime.fromtimestamp(at_wall, tz=UTC) - _EPOCH) // _MS


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(ms: int) -> str:
    """``iso_utc`` of a time in unix ms (events of one second share the cached date part)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}{millis:03d}Z"


def uuid_text(packed: bytes) -> str:
    """The canonical text (lowercase, dashed) of a UUID's 16 bytes."""
    h = packed.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pack(value: object, at_ms: int) -> bytes:
    """The typed form of a value json.loads made; timestamps are stored against ``at_ms``."""
    out = bytearray()
    _pack(value, out, at_ms)
    return bytes(out)


def pack_key(key: str) -> bytes:
    """An object key as the typed form spells it (also what a deflate dictionary may hold)."""
    raw = key.encode()
    out = bytearray()
    _varint(len(raw), out)
    return bytes(out) + raw


def unpack(raw: bytes, at_ms: int) -> str:
    """The compact JSON text of the typed value ``raw`` (``pack``'s inverse); CodecError if it is damaged."""
    out: list[str] = []
    try:
        end = _unpack(raw, 0, at_ms, out)
    except (IndexError, KeyError, UnicodeDecodeError) as exc:
        raise CodecError(f"typed value is damaged: {exc!r}") from exc
    if end != len(raw):
        raise CodecError("typed value does not end where its values do")
    return "".join(out)


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int, out: bytearray) -> None:
    _varint(value << 1 if value >= 0 else ((-value) << 1) - 1, out)


def _pack(value: object, out: bytearray, at_ms: int) -> None:
    """Append the typed form of a value json.loads made (so only dict, list, str, int, float, bool, None)."""
    kind = type(value)
    if kind is str:
        _pack_str(cast(str, value), out, at_ms)
    elif kind is dict:
        obj = cast(dict[str, object], value)
        shape = _SHAPE_IDS.get(tuple(obj))
        if shape is not None:
            out += bytes((_SHAPE, shape))
            for item in obj.values():
                _pack(item, out, at_ms)
            return
        out.append(_OBJECT)
        _varint(len(obj), out)
        for key, item in obj.items():
            out += pack_key(key)
            _pack(item, out, at_ms)
    elif kind is bool:
        out.append(_TRUE if value else _FALSE)
    elif kind is int:
        out.append(_INT)
        _zigzag(cast(int, value), out)
    elif kind is float:
        # As its repr (what json.dumps writes): "0.25" deflates to fewer bytes than 8 of a double.
        text = repr(value).encode()
        out += bytes((_FLOAT, len(text)))
        out += text
    elif kind is list:
        items = cast(list[object], value)
        out.append(_LIST)
        _varint(len(items), out)
        for item in items:
            _pack(item, out, at_ms)
    elif value is None:
        out.append(_NULL)
    else:
        raise TypeError(f"not a JSON value: {kind.__name__}")


def _pack_str(text: str, out: bytearray, at_ms: int) -> None:
    size = len(text)
    if size == 36 and UUID_TEXT.fullmatch(text):
        out.append(_UUID)
        out += bytes.fromhex(text.replace("-", ""))
        return
    if size >= 16 and not size % 2 and _HEX_TEXT.fullmatch(text):
        out += bytes((_HEX, size // 2))
        out += bytes.fromhex(text)
        return
    if size == 24 and _ISO_MS.fullmatch(text):
        ms = _iso_to_ms(text)
        if ms is not None and iso_ms(ms) == text:
            out.append(_TIME)
            _zigzag(ms - at_ms, out)
            return
    raw = text.encode()
    out.append(_STR)
    _varint(len(raw), out)
    out += raw


def _iso_to_ms(text: str) -> int | None:
    """Unix ms of a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text, or None if it names no real instant (Feb 30)."""
    try:
        stamp = datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return (stamp - _EPOCH) // _MS + int(text[20:23])


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _unpack(raw: bytes, pos: int, at_ms: int, out: list[str]) -> int:
    """Append the JSON text of the value at ``pos``; return where the next value starts.

    The most frequent tags come first, and a length or number under 128 (one byte) is read in place: a peek
    decodes hundreds of events at a time on the event loop.
    """
    tag = raw[pos]
    pos += 1
    if tag == _STR:
        size = raw[pos]
        if size < 0x80:
            pos += 1
        else:
            size, pos = _read_varint(raw, pos)
        out.append(encode_str(raw[pos : pos + size].decode()))
        return pos + size
    if tag == _SHAPE:
        keys = _SHAPE_KEYS[raw[pos]]
        pos += 1
        for key in keys:
            out.append(key)
            pos = _unpack(raw, pos, at_ms, out)
        out.append("}")
        return pos
    if tag <= _TRUE:
        out.append(("null", "false", "true")[tag])
        return pos
    if tag in (_TIME, _INT):  # one number format
        value = raw[pos]
        if value < 0x80:
            pos += 1
        else:
            value, pos = _read_varint(raw, pos)
        value = (value >> 1) if not value & 1 else -((value + 1) >> 1)
        out.append(f'"{iso_ms(at_ms + value)}"' if tag == _TIME else str(value))
        return pos
    if tag == _FLOAT:
        size = raw[pos]
        out.append(raw[pos + 1 : pos + 1 + size].decode("ascii"))
        return pos + 1 + size
    if tag == _UUID:
        out.append(f'"{uuid_text(raw[pos : pos + 16])}"')
        return pos + 16
    if tag == _HEX:
        size = raw[pos]
        out.append(f'"{raw[pos + 1 : pos + 1 + size].hex()}"')
        return pos + 1 + size
    if tag == _LIST:
        count, pos = _read_varint(raw, pos)
        out.append("[")
        for index in range(count):
            if index:
                out.append(",")
            pos = _unpack(raw, pos, at_ms, out)
        out.append("]")
        return pos
    if tag == _OBJECT:
        count, pos = _read_varint(raw, pos)
        out.append("{")
        for index in range(count):
            size, pos = _read_varint(raw, pos)
            key = encode_str(raw[pos : pos + size].decode())
            out.append(f",{key}:" if index else f"{key}:")
            pos = _unpack(raw, pos + size, at_ms, out)
        out.append("}")
        return pos
    raise KeyError(f"tag {tag}")
