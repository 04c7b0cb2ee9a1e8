"""The outbox's compact form of an event, and the wire Event it stands for, byte for byte.

A queued event is stored as small columns (the id as 16 bytes, the kind as a small number, the time in ms,
the shopper) and its ``data`` in the typed form of edge/ledger/typedjson.py, deflated with a fixed
dictionary. ``row_wire`` rebuilds the exact bytes that ``encode_event`` made and the cloud receives. Every
code below is on disk in some store: never change or reuse one, append; and a new codec, tag or shape ships
with a migration step (an empty one will do), so an older gateway refuses the file ("newer than this gateway
supports") instead of meeting rows it cannot read. See docs/ledger.md "Outbox on disk".
"""

from __future__ import annotations

import json
import zlib
from typing import Final

from edge.ledger.typedjson import (
    SHAPES,
    UUID_TEXT,
    CodecError,
    encode_str,
    iso_ms,
    pack,
    pack_key,
    unpack,
    uuid_text,
)
from edge.sync.wire import EventClass

# The kinds the gateway queues, as the small integers stored in ``outbox.kind``; any other kind is stored as
# its text (the column has no type affinity, so an int and a text never mix up).
KIND_CODES: Final = {"decision": 1, "exposure": 2, "consent": 3, "erasure": 4, "conversion": 5}
_KINDS: Final = {code: kind for kind, code in KIND_CODES.items()}

# How ``outbox.data`` is encoded: its first byte.
VERBATIM: Final = 0  # the whole wire event as it was queued (rows from before schema 5)
JSON_TEXT: Final = 1  # the data's compact JSON text (the typed form did not give it back exactly)
TYPED: Final = 2  # the typed form, when deflating would not make it smaller
TYPED_DEFLATE_1: Final = 3  # the typed form, raw deflate with DICTIONARY_1

# A raw deflate window of 4 KiB: events are a few hundred bytes, so a larger one only costs memory per event.
_WBITS: Final = -12
_LEVEL: Final = 9
# 8 KiB of hash table instead of 128: the same output for events this small, a tenth of the memory to set up.
_MEM_LEVEL: Final = 4

# What deflate may refer back to before the first byte of an event: the field names (as a producer's object
# beyond the known shapes spells them) and the values of the contract's closed lists (purposes, check-in
# sources), the most frequent last (the nearest are the cheapest to refer to). Never edit; a new dictionary is
# a new codec.
DICTIONARY_1: Final = b"".join(
    [
        *(pack_key(key) for keys in SHAPES for key in keys),
        *(
            pack(value, 0)
            for value in (
                "device_preferences",
                "presence_ble",
                "camera_checkin",
                "clienteling",
                "personalization",
                "measurement",
                "qr",
                "kiosk",
                "app",
            )
        ),
    ]
)


def pack_id(event_id: str) -> bytes | str:
    """A UUID in its canonical text (lowercase, dashed) as its 16 bytes; any other id as it is."""
    if len(event_id) == 36 and UUID_TEXT.fullmatch(event_id):
        return bytes.fromhex(event_id.replace("-", ""))
    return event_id


def unpack_id(stored: bytes | str) -> str:
    return stored if isinstance(stored, str) else uuid_text(stored)


def pack_kind(kind: str) -> int | str:
    return KIND_CODES.get(kind, kind)


def unpack_kind(stored: int | str) -> str:
    return _KINDS[stored] if isinstance(stored, int) else stored


def wire(
    event_id: str, kind: str, cls: EventClass, at_ms: int, shopper_id: str | None, data_json: str
) -> bytes:
    """The wire Event (docs/sync.md) as compact UTF-8 JSON: what json.dumps of the whole object gives."""
    shopper = "null" if shopper_id is None else encode_str(shopper_id)
    return (
        f'{{"id":{encode_str(event_id)},"kind":{encode_str(kind)},"class":"{cls.wire}",'
        f'"at":"{iso_ms(at_ms)}","shopper_id":{shopper},"data":{data_json}}}'
    ).encode()


def wire_string(text: str) -> bytes:
    """A string as the wire event writes it (JSON, UTF-8)."""
    return encode_str(text).encode()


def row_wire(
    event_id: str, kind: str, cls: EventClass, at_ms: int, shopper_id: str | None, data: bytes
) -> bytes:
    """The wire Event of a stored row (``data`` is the ``outbox.data`` column)."""
    if data[0] == VERBATIM:
        return data[1:]
    return wire(event_id, kind, cls, at_ms, shopper_id, decode_data(data, at_ms))


def row_data(data: bytes, at_ms: int) -> object:
    """The event's ``data`` of a stored row, parsed (for the few readers that look inside, e.g. a rebuild)."""
    if data[0] == VERBATIM:
        return json.loads(data[1:])["data"]
    return json.loads(decode_data(data, at_ms))


def verbatim(body: bytes) -> bytes:
    """``outbox.data`` for a wire event kept exactly as it is (the migration of older rows)."""
    return bytes((VERBATIM,)) + body


def encode_data(data_json: str, at_ms: int) -> bytes:
    """``outbox.data`` for an event's data (its compact JSON text); timestamps are stored against ``at_ms``.

    The typed form is decoded again here and kept only if it gives ``data_json`` back exactly; otherwise the
    text is kept as it is. So what is pushed never depends on the codec being right.
    """
    try:
        typed = bytes((TYPED,)) + pack(json.loads(data_json), at_ms)
    except RecursionError:  # nested deeper than the packer's recursion: kept as text
        return bytes((JSON_TEXT,)) + data_json.encode()
    packer = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_1
    )
    deflated = bytes((TYPED_DEFLATE_1,)) + packer.compress(typed[1:]) + packer.flush()
    stored = deflated if len(deflated) < len(typed) else typed
    try:
        exact = decode_data(stored, at_ms) == data_json
    except (CodecError, RecursionError):
        exact = False
    return stored if exact else bytes((JSON_TEXT,)) + data_json.encode()


def decode_data(data: bytes, at_ms: int) -> str:
    """The data's compact JSON text from ``outbox.data`` (not for VERBATIM rows: see ``row_wire``)."""
    codec = data[0]
    if codec == JSON_TEXT:
        return data[1:].decode()
    if codec == TYPED_DEFLATE_1:
        unpacker = zlib.decompressobj(_WBITS, zdict=DICTIONARY_1)
        try:
            raw = unpacker.decompress(data[1:]) + unpacker.flush()
        except zlib.error as exc:
            raise CodecError(f"outbox data does not inflate: {exc}") from exc
    elif codec == TYPED:
        raw = data[1:]
    else:
        raise CodecError(f"unknown outbox data codec {codec}")
    return unpack(raw, at_ms)
