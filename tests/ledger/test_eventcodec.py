"""The outbox's compact encoding: any event comes back as exactly the wire bytes the gateway always pushed."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.clock import iso_utc
from edge.ledger import eventcodec
from edge.ledger.eventcodec import decode_data, encode_data, pack_id, unpack_id
from edge.ledger.outbox import encode_event, event_id_for, outbox_entry
from edge.ledger.typedjson import CodecError, iso_ms, wall_ms
from edge.sync.wire import EventClass

AT = 1_800_000_000.0
# Strings the codec packs (UUIDs, hex ids, timestamps) and near misses it must leave as text.
_tricky_strings = st.one_of(
    st.text(),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.binary(min_size=1, max_size=40).map(bytes.hex),
    st.floats(0, 4e9).map(iso_utc),
    st.sampled_from(["2027-02-30T10:00:00.000Z", "9999-12-31T23:59:59.999Z", "0999-01-01T00:00:00.000Z"]),
    st.sampled_from(
        [
            "\uff12\uff10\uff12\uff17-03-01T09:00:00.000Z",  # fullwidth digits: not a timestamp
            "cafe",
            "e7524102-7acf-4bcc-9af4-321addd3e77",
            "\x00\u2028",
        ]
    ),
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _tricky_strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky_strings, inner, max_size=4),
    max_leaves=12,
)
_kinds = st.sampled_from(["decision", "exposure", "consent", "erasure", "conversion"]) | st.text(min_size=1)
_event_ids = st.uuids().map(str) | st.text(min_size=1, max_size=64)


def _old_wire(
    event_id: str, kind: str, cls: EventClass, at_wall: float, shopper: str | None, data: Any
) -> bytes:
    """How every gateway before the compact outbox encoded the wire Event: the contract's reference bytes."""
    document = {
        "id": event_id,
        "kind": kind,
        "class": cls.wire,
        "at": iso_utc(at_wall),
        "shopper_id": shopper,
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _through_a_row(
    event_id: str, kind: str, cls: EventClass, at_wall: float, shopper: str | None, data: Any
) -> bytes:
    new = encode_event(kind, cls, data, at_wall=at_wall, shopper_id=shopper, event_id=event_id)
    # The typed form itself gives the text back (encode_data's fallback to the plain text is a safety net only).
    assert new.data[0] in (eventcodec.TYPED, eventcodec.TYPED_DEFLATE_1)
    stored_id, stored_cls, stored_kind, at_ms, stored_shopper, size, stored = new.row()
    entry = outbox_entry((7, stored_id, stored_cls, stored_kind, at_ms, stored_shopper, stored))
    assert (entry.event_id, entry.kind, entry.cls, entry.shopper_id) == (event_id, kind, cls, shopper)
    assert size == len(new.body) == len(entry.body)
    return entry.body


@settings(max_examples=400, deadline=None)
@given(
    data=st.dictionaries(_tricky_strings, _json_values, max_size=6),
    event_id=_event_ids,
    kind=_kinds,
    cls=st.sampled_from(list(EventClass)),
    at_wall=st.floats(0, 4e9),
    shopper=st.none() | _tricky_strings,
)
@example(data={}, event_id="e1", kind="erasure", cls=EventClass.PRIVACY, at_wall=AT, shopper="p-1")
def test_a_stored_event_is_pushed_as_the_same_bytes_as_ever(
    data: dict[str, Any], event_id: str, kind: str, cls: EventClass, at_wall: float, shopper: str | None
) -> None:
    expected = _old_wire(event_id, kind, cls, at_wall, shopper, data)
    assert (
        encode_event(kind, cls, data, at_wall=at_wall, shopper_id=shopper, event_id=event_id).body == expected
    )
    assert _through_a_row(event_id, kind, cls, at_wall, shopper, data) == expected


@given(at_wall=st.floats(0, 4e9))
@example(at_wall=1_800_000_000.0005)  # halfway between two microseconds: iso_utc rounds, then truncates
@example(at_wall=1_800_000_000.9995)
def test_the_stored_millisecond_shows_the_same_time(at_wall: float) -> None:
    assert iso_ms(wall_ms(at_wall)) == iso_utc(at_wall)


def test_the_gateways_own_events_are_stored_typed_at_a_fraction_of_their_size() -> None:
    decision = {
        "decision_id": "0190f1a2b3c47d5e8f9a0b1c2d3e4f50",
        "display_id": "screen-cafe-1",
        "zone": "cafe",
        "offer_id": "offer-007",
        "template": "hero",
        "model_version": "offers-2026-11-20",
        "propensity": 0.123456,
        "explored": False,
        "holdout": False,
        "personalized": True,
    }
    exposure = {
        "decision_id": "0190f1a2b3c47d5e8f9a0b1c2d3e4f50",
        "display_id": "screen-cafe-1",
        "version": 4,
        "shown_at": iso_utc(AT),
        "acked_at": iso_utc(AT + 0.25),
    }
    consent = {"purpose": "measurement", "granted": True, "at": iso_utc(AT), "source": "app"}
    for kind, data in (("decision", decision), ("exposure", exposure), ("consent", consent)):
        event = encode_event(kind, EventClass.TELEMETRY, data, at_wall=AT, event_id=event_id_for(AT, kind))
        assert event.data[0] in (eventcodec.TYPED, eventcodec.TYPED_DEFLATE_1), kind
        # The wire event's envelope is not stored at all, and its data takes well under half of its text.
        text = len(json.dumps(data, separators=(",", ":")))
        assert len(event.data) <= 0.4 * text, (kind, len(event.data), text)
        stored_id = event.row()[0]
        assert isinstance(stored_id, bytes) and len(stored_id) == 16


def test_ids_are_packed_only_when_they_come_back_as_the_same_text() -> None:
    canonical = str(uuid.UUID(int=0x0190F1A2B3C47D5E8F9A0B1C2D3E4F50))
    assert pack_id(canonical) == uuid.UUID(canonical).bytes
    assert unpack_id(pack_id(canonical)) == canonical
    for other in (canonical.upper(), uuid.UUID(canonical).hex, "fixed-id", "{" + canonical + "}"):
        assert pack_id(other) == other
        assert unpack_id(pack_id(other)) == other


def test_the_data_json_text_codec_and_damage() -> None:
    assert decode_data(b"\x01" + '{"x":"é"}'.encode(), 0) == '{"x":"é"}'
    good = encode_data('{"a":[1,2.5,"x"]}', 0)
    assert decode_data(good, 0) == '{"a":[1,2.5,"x"]}'
    with pytest.raises(CodecError, match="unknown"):
        decode_data(b"\x09" + good[1:], 0)
    with pytest.raises(CodecError):
        decode_data(bytes((eventcodec.TYPED_DEFLATE_1,)) + b"\xff\xff\xff", 0)
    with pytest.raises(CodecError):
        decode_data(bytes((eventcodec.TYPED,)) + b"\x05\x09ab", 0)  # a string longer than what is left
    with pytest.raises(CodecError, match="does not end"):
        decode_data(bytes((eventcodec.TYPED,)) + b"\x00\x00", 0)


# Stored by this version: every later gateway must read them back to the same text (codes are never reused).
_GOLDEN = (
    (
        "020b0107100190f1a2b3c47d5e8f9a0b1c2d3e4f50050d73637265656e2d636166652d310308080008f403",
        '{"decision_id":"0190f1a2b3c47d5e8f9a0b1c2d3e4f50","display_id":"screen-cafe-1","version":4,'
        '"shown_at":"2027-01-15T08:00:00.000Z","acked_at":"2027-01-15T08:00:00.250Z"}',
    ),
    (
        "03e366429166e260000b0300",
        '{"purpose":"measurement","granted":true,"at":"2027-01-15T08:00:00.000Z","source":"app"}',
    ),
    (
        "03e36261cd2f4a492d6265ced73584388e9385998985d948cf948191293385ed79902353d579ef33b3be1849ddbd"
        "fcbc92252fbf249595353931edf04a00",
        '{"order":"o-1","items":[1,2.5,null,false],"id":"e7524102-7acf-4bcc-9af4-321addd3e779","note":"café"}',
    ),
)


@pytest.mark.parametrize(("stored", "text"), _GOLDEN)
def test_what_this_version_stored_is_read_back_by_every_later_one(stored: str, text: str) -> None:
    assert decode_data(bytes.fromhex(stored), wall_ms(AT)) == text


def test_the_codes_on_disk_never_change() -> None:
    # Appending is fine (extend these literals); changing or reusing a code breaks the outboxes in the field.
    assert eventcodec.KIND_CODES == {
        "decision": 1,
        "exposure": 2,
        "consent": 3,
        "erasure": 4,
        "conversion": 5,
    }
    assert (eventcodec.VERBATIM, eventcodec.JSON_TEXT, eventcodec.TYPED, eventcodec.TYPED_DEFLATE_1) == (
        0,
        1,
        2,
        3,
    )
    assert hashlib.sha256(eventcodec.DICTIONARY_1).hexdigest() == (
        "f074e189cc98d7b5a50e7665dbfd27883e229e7e84576eb7382e8316195e1f60"
    )
