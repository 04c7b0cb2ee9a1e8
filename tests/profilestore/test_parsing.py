"""The pure parts: capped gzip, JSON marking, timestamps and cursors (hypothesis where it pays)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestore.jsonbody import BodyError, gunzip, json_problem, parse_json
from profilestore.models import (
    CursorError,
    decode_cursor,
    encode_cursor,
    parse_timestamp,
    render_timestamp,
)

CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | CLEAN_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(CLEAN_TEXT, children, max_size=4),
    max_leaves=20,
)
MAX_US = int(
    (datetime(9999, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
)


@given(st.binary(max_size=5000))
def test_gzip_round_trips_under_the_cap(data: bytes) -> None:
    assert gunzip(gzip.compress(data), 5000) == data


@settings(max_examples=30)
@given(st.binary(min_size=101, max_size=3000))
def test_gzip_past_the_cap_is_refused(data: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        gunzip(gzip.compress(data), 100)
    assert refused.value.status == 413


def test_a_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024))
    with pytest.raises(BodyError) as refused:
        gunzip(bomb, 1024 * 1024)
    assert refused.value.code == "payload_too_large"


@given(JSON_VALUES)
def test_clean_json_parses_back_and_has_no_problem(value: Any) -> None:
    parsed = parse_json(json.dumps(value).encode())
    assert parsed == value
    assert json_problem(parsed) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b'{"a": NaN}', "non-finite"),
        (b'{"a": [Infinity]}', "non-finite"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": 9223372036854775808}', "out of range"),
        (b'{"a": "\\u0000"}', "NUL"),
        (b'{"\\u0000": 1}', "NUL"),
        (b'{"a": "\\udc00"}', "surrogate"),
        (b'{"a": {"b": 1, "b": 2}}', "repeated key"),
    ],
)
def test_unstorable_values_are_found_with_their_place(text: bytes, problem: str) -> None:
    found = json_problem(parse_json(text))
    assert found is not None
    assert problem in found


def test_shallow_checks_leave_items_to_their_own_judgement() -> None:
    envelope = parse_json(b'{"events": [{"x": NaN}, {"a": 1, "a": 2}]}')
    assert json_problem(envelope, shallow=True) is None
    assert json_problem(parse_json(b'{"events": [], "events": []}'), shallow=True) is not None


@given(st.integers(min_value=0, max_value=MAX_US - 1))
def test_timestamps_round_trip(micros: int) -> None:
    rendered = render_timestamp(micros)
    assert rendered.endswith("Z")
    assert parse_timestamp(rendered) == micros


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("2026-11-01T11:00:00+01:00", "2026-11-01T10:00:00Z"),
        ("2026-11-01t10:00:00z", "2026-11-01T10:00:00Z"),
        ("2026-11-01T10:00:00.123456789Z", "2026-11-01T10:00:00.123456Z"),
        ("2026-11-01T04:30:00-05:30", "2026-11-01T10:00:00Z"),
    ],
)
def test_offsets_and_precision(text: str, same_as: str) -> None:
    assert parse_timestamp(text) == parse_timestamp(same_as)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01",
        "2026-11-01T10:00:00",
        "2026-13-01T00:00:00Z",
        "2026-11-01T10:00:60Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "2026-11-01T10:00:00+24:00",
        "\uff12\uff10\uff12\uff16-11-01T10:00:00Z"  # fullwidth digits,
        " 2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00Z\n",
    ],
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_cursors_round_trip(seq: int) -> None:
    assert decode_cursor(encode_cursor("0123456789abcdef", seq), "0123456789abcdef") == seq


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("5", False),
        ("0123456789abcdef.01", False),
        ("0123456789ABCDEF.1", False),
        ("0123456789abcdef.9223372036854775808", False),
        ("0123456789abcdef.1\n", False),
        ("fedcba9876543210.1", True),
    ],
)
def test_bad_cursors(text: str, gone: bool) -> None:
    with pytest.raises(CursorError) as refused:
        decode_cursor(text, "0123456789abcdef")
    assert refused.value.gone == gone


def test_no_cursor_means_the_beginning() -> None:
    assert decode_cursor(None, "0123456789abcdef") == 0
    assert decode_cursor("", "0123456789abcdef") == 0
