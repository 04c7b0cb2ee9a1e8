import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.sources.payloads import (
    AckMessage,
    CheckinMessage,
    RejectCounter,
    Rejected,
    parse_ack,
    parse_availability,
    parse_checkin,
)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def test_checkin_valid() -> None:
    parsed = parse_checkin(_json({"v": 1, "token": "a.b.c", "zone": "cafe", "source": "kiosk"}))
    assert parsed == CheckinMessage(token="a.b.c", zone="cafe", source="kiosk")


def test_checkin_source_defaults_to_app() -> None:
    parsed = parse_checkin(_json({"token": "a.b.c", "zone": "cafe"}))
    assert isinstance(parsed, CheckinMessage)
    assert parsed.source == "app"


def test_checkin_rejections() -> None:
    cases = {
        b"\xff\xfe": "not_utf8",
        b"{": "not_json",
        b"[1]": "not_object",
        _json({"v": 2, "token": "t", "zone": "z"}): "unsupported_version",
        _json({"zone": "cafe"}): "missing_token",
        _json({"token": "x" * 5000, "zone": "cafe"}): "oversized_token",
        _json({"token": "t", "zone": "../../etc"}): "bad_zone",
        _json({"token": "t", "zone": "a/b"}): "bad_zone",
        _json({"token": "t", "zone": "+"}): "bad_zone",
        _json({"token": "t", "zone": "cafe", "source": "telepathy"}): "bad_source",
        b"[" * 100_000: "not_json",
    }
    for payload, reason in cases.items():
        assert parse_checkin(payload) == Rejected(reason), payload[:40]


def test_ack_valid_and_rejections() -> None:
    ok = parse_ack(
        _json({"version": 7, "decision_id": "d1", "status": "shown", "shown_at": "2026-11-22T10:00:00Z"})
    )
    assert isinstance(ok, AckMessage)
    assert ok.version == 7
    assert ok.shown_at_wall == 1795341600.0
    assert parse_ack(_json({"version": True, "status": "shown"})) == Rejected("bad_version")
    assert parse_ack(_json({"version": -1, "status": "shown"})) == Rejected("bad_version")
    assert parse_ack(_json({"version": 1, "status": "maybe"})) == Rejected("bad_status")
    assert parse_ack(_json({"version": 1, "status": "shown", "decision_id": 5})) == Rejected(
        "bad_decision_id"
    )
    assert parse_ack(_json({"version": 1, "status": "shown", "shown_at": "yesterday"})) == Rejected(
        "bad_shown_at"
    )


def test_availability_forms() -> None:
    assert parse_availability(b"online") is True
    assert parse_availability(b"offline\n") is False
    assert parse_availability(_json({"state": "online"})) is True
    assert parse_availability(b"maybe") == Rejected("bad_state")
    assert parse_availability(b"\xff") == Rejected("not_utf8")


@given(st.binary(max_size=512))
def test_parsers_never_raise_on_bytes(payload: bytes) -> None:
    for parser in (parse_checkin, parse_ack, parse_availability):
        parser(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "token", "zone", "source", "version", "decision_id", "status", "shown_at", "state"]
        ),
        json_values,
    )
)
def test_parsers_never_raise_on_json_objects(body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    for parser in (parse_checkin, parse_ack, parse_availability):
        parser(payload)


def test_reject_counter_counts_and_logs_once_per_kind(caplog) -> None:
    counter = RejectCounter()
    for _ in range(5):
        counter.reject("checkin", "not_json", "t")
    counter.reject("checkin", "bad_zone", "t")
    counter.reject("ack", "bad_status", "t")
    assert counter.as_dict() == {"ack.bad_status": 1, "checkin.bad_zone": 1, "checkin.not_json": 5}
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 2
