import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.sources.payloads import (
    ACK_STATUSES,
    CHECKIN_SOURCES,
    MAX_ACK_VERSION,
    MAX_CLOCK_SKEW_S,
    MAX_TOKEN_LEN,
    AckMessage,
    Availability,
    CheckinMessage,
    RejectCounter,
    Rejected,
    checkin_reply_to,
    exposure_time,
    is_id,
    parse_ack,
    parse_availability,
    parse_checkin,
    parse_utc,
)
from edge.sources.rejections import Kind, reasons_of

KEYS = ["v", "ts", "token", "zone", "source", "version", "decision_id", "status", "shown_at", "state"]


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _v1(**body: object) -> bytes:
    return _json({"v": 1, **body})


def test_checkin_valid() -> None:
    parsed = parse_checkin(_json({"v": 1, "token": "a.b.c", "zone": "cafe", "source": "kiosk"}))
    assert parsed == CheckinMessage(token="a.b.c", zone="cafe", source="kiosk")


def test_checkin_reply_to_is_an_id_and_is_found_even_in_a_refused_checkin() -> None:
    parsed = parse_checkin(_v1(token="a.b.c", zone="cafe", reply_to="app-7f3a.1_x"))
    assert isinstance(parsed, CheckinMessage)
    assert parsed.reply_to == "app-7f3a.1_x"
    assert parse_checkin(_v1(token="a.b.c", zone="cafe")) == CheckinMessage("a.b.c", "cafe", "app", None)
    # The app still hears why its check-in was refused by the parser, if it said where to answer.
    assert checkin_reply_to(_v1(zone="../x", reply_to="app-1")) == "app-1"
    assert checkin_reply_to(_v1(zone="cafe", reply_to="a/b")) is None
    assert checkin_reply_to(b"{") is None


def test_checkin_source_defaults_to_app() -> None:
    parsed = parse_checkin(_v1(token="a.b.c", zone="cafe"))
    assert isinstance(parsed, CheckinMessage)
    assert parsed.source == "app"


def test_checkin_rejections() -> None:
    cases = {
        b"\xff\xfe": "not_utf8",
        b"{": "not_json",
        b"[1]": "not_object",
        _json({"v": 2, "token": "t", "zone": "z"}): "unsupported_version",
        _json({"token": "t", "zone": "cafe"}): "missing_version",
        _v1(zone="cafe"): "missing_token",
        _v1(token="x" * 5000, zone="cafe"): "oversized_token",
        _v1(token="t", zone="../../etc"): "bad_zone",
        _v1(token="t", zone="a/b"): "bad_zone",
        _v1(token="t", zone="+"): "bad_zone",
        _v1(token="t", zone="cafe", source="telepathy"): "bad_source",
        _v1(token="t", zone="cafe", ts="yesterday"): "bad_ts",
        _v1(token="t", zone="cafe", reply_to="a/b"): "bad_reply_to",
        _v1(token="t", zone="cafe", reply_to="#"): "bad_reply_to",
        _v1(token="t", zone="cafe", reply_to=""): "bad_reply_to",
        _v1(token="t", zone="cafe", reply_to=7): "bad_reply_to",
        _v1(token="t", zone="cafe", reply_to="x" * 65): "bad_reply_to",
        b"[" * 100_000: "not_json",
    }
    for payload, reason in cases.items():
        assert parse_checkin(payload) == Rejected(reason), payload[:40]


def test_ack_valid_and_rejections() -> None:
    ok = parse_ack(_v1(version=7, decision_id="d1", status="shown", shown_at="2026-11-22T10:00:00Z"))
    assert isinstance(ok, AckMessage)
    assert ok.version == 7
    assert ok.shown_at_wall == 1795341600.0
    assert parse_ack(_v1(version=True, status="shown")) == Rejected("bad_version")
    assert parse_ack(_v1(version=-1, status="shown")) == Rejected("bad_version")
    assert parse_ack(_v1(version=1, status="maybe")) == Rejected("bad_status")
    assert parse_ack(_v1(version=1, status="shown", decision_id=5)) == Rejected("bad_decision_id")
    assert parse_ack(_v1(version=1, status="shown", shown_at="yesterday")) == Rejected("bad_shown_at")
    assert parse_ack(_json({"version": 1, "status": "shown"})) == Rejected("missing_version")


def test_availability_forms() -> None:
    assert parse_availability(b"online") is Availability.ONLINE
    assert parse_availability(b"offline\n") is Availability.OFFLINE
    assert parse_availability(_json({"state": "online"})) is Availability.ONLINE
    assert parse_availability(_json({"v": 1, "state": "offline"})) is Availability.OFFLINE
    assert parse_availability(_json({"v": 2, "state": "online"})) == Rejected("bad_state")
    assert parse_availability(b"maybe") == Rejected("bad_state")
    assert parse_availability(b"[]") == Rejected("bad_state")
    assert parse_availability(b"\xff") == Rejected("not_utf8")
    # an empty payload clears the retained availability: the display was removed, not a bad message
    assert parse_availability(b"") is Availability.CLEARED


def assert_verdicts(payload: bytes) -> None:
    """Each parser's answer to ``payload``: a message within the contract, or a refusal docs/mqtt.md lists."""
    for parser, kind in (
        (parse_checkin, Kind.CHECKIN),
        (parse_ack, Kind.ACK),
        (parse_availability, Kind.AVAILABILITY),
    ):
        parsed = parser(payload)
        if isinstance(parsed, Rejected):
            assert parsed.reason in reasons_of(kind), (kind, parsed.reason)
        elif kind is Kind.CHECKIN:
            assert isinstance(parsed, CheckinMessage)
            assert 0 < len(parsed.token) <= MAX_TOKEN_LEN
            assert is_id(parsed.zone) and parsed.source in CHECKIN_SOURCES
            assert parsed.reply_to is None or is_id(parsed.reply_to)
        elif kind is Kind.ACK:
            assert isinstance(parsed, AckMessage)
            assert 0 < parsed.version <= MAX_ACK_VERSION and parsed.status in ACK_STATUSES
            assert parsed.decision_id is None or 0 < len(parsed.decision_id) <= 64
        else:
            assert isinstance(parsed, Availability)


@given(st.binary(max_size=512))
def test_any_bytes_get_a_message_or_a_documented_refusal(payload: bytes) -> None:
    assert_verdicts(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

# Values a field may well hold, good and bad; put into a valid message one or two at a time, so that the
# property below sees accepted messages and each refusal, not only envelopes that fail at once.
PLAUSIBLE: dict[str, list[object]] = {
    "v": [1, 2, "1"],
    "ts": ["2026-11-22T10:15:03Z", "2026-11-22T10:15:03", "yesterday"],
    "token": ["a.b.c", "", "x" * 5000],
    "zone": ["cafe", "../x", ""],
    "source": ["app", "kiosk", "qr", "web"],
    "reply_to": ["app-1", "a/b"],
    "version": [1, 2**63 - 1, 2**63, 0],
    "decision_id": [None, "d-1", ""],
    "status": ["shown", "failed", "seen"],
    "shown_at": ["2026-11-22T10:15:03.120Z", "9999-12-31T23:59:59Z", "soon"],
    "state": ["online", "offline", "away"],
}
VALID = [
    {"v": 1, "token": "a.b.c", "zone": "cafe"},
    {"v": 1, "version": 7, "decision_id": "d-1", "status": "shown"},
    {"v": 1, "state": "online"},
]
near_valid = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from(VALID),
    st.dictionaries(
        st.sampled_from(list(PLAUSIBLE)),
        st.sampled_from(list(PLAUSIBLE.values())).flatmap(st.sampled_from) | json_values,
        max_size=2,
    ),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), json_values) | near_valid)
# Found by this property once it checked answers and reached the fields: `x not in frozenset` raised
# TypeError for a list or an object, a handler error (with a traceback logged each time), not a refusal.
@example({"v": 1, "token": "a.b.c", "zone": "cafe", "source": ["app"]})
@example({"v": 1, "version": 7, "status": {"shown": True}})
def test_any_json_object_gets_a_message_or_a_documented_refusal(body: dict[str, object]) -> None:
    assert_verdicts(_json(body))


def test_reject_counter_counts_and_logs_once_per_kind(caplog) -> None:
    """The counter itself, kept from the old payloads module (re-exported for callers)."""
    counter = RejectCounter()
    for _ in range(5):
        counter.reject("checkin", "not_json", "t")
    counter.reject("checkin", "bad_zone", "t")
    counter.reject("ack", "bad_status", "t")
    assert counter.as_dict() == {"ack.bad_status": 1, "checkin.bad_zone": 1, "checkin.not_json": 5}
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 2


# ----- the contract's strictness (issue 12 item 7) ----------------------------------------------------------


@pytest.mark.parametrize("parser", [parse_checkin, parse_ack])
def test_v_must_be_exactly_the_integer_1(parser: Callable[[bytes], object]) -> None:
    body = {"token": "t", "zone": "cafe", "version": 7, "status": "shown"}
    assert parser(_json(body)) == Rejected("missing_version")
    for version in (2, 0, True, 1.0, "1", None, [1]):
        assert parser(_json({**body, "v": version})) == Rejected("unsupported_version"), version
    assert not isinstance(parser(_json({**body, "v": 1})), Rejected)


GOOD_TS = ["2026-11-22T10:15:03Z", "2026-11-22T10:15:03.120Z", "2026-11-22t10:15:03.123456789+00:00"]
BAD_TS = [
    "yesterday",
    "",
    "2026-11-22",  # a date is not a time
    "2026-11-22T10:15:03",  # naive: which zone?
    "2026-11-22T10:15:03+02:00",  # the contract says UTC
    "2026-11-22 10:15:03Z",
    "2026-02-30T10:15:03Z",
    "2026-11-22T10:15:60Z",
    "2026-11-22T10:15:03." + "1" * 40 + "Z",
    "\uff12\uff10\uff12\uff16-11-22T10:15:03Z",  # fullwidth digits, which int() would accept
    1795342503,
    ["2026-11-22T10:15:03Z"],
]


@pytest.mark.parametrize("ts", GOOD_TS)
def test_ts_is_optional_but_when_present_iso_8601_utc(ts: str) -> None:
    assert isinstance(parse_checkin(_v1(token="t", zone="cafe", ts=ts)), CheckinMessage)
    assert isinstance(parse_ack(_v1(version=1, status="shown", ts=ts, shown_at=ts)), AckMessage)
    assert parse_utc(ts) is not None


@pytest.mark.parametrize("ts", BAD_TS, ids=repr)
def test_a_bad_ts_is_refused(ts: object) -> None:
    assert parse_checkin(_v1(token="t", zone="cafe", ts=ts)) == Rejected("bad_ts")
    assert parse_ack(_v1(version=1, status="shown", ts=ts)) == Rejected("bad_ts")
    assert parse_ack(_v1(version=1, status="shown", shown_at=ts)) == Rejected("bad_shown_at")


def test_null_ts_and_shown_at_are_the_same_as_absent() -> None:
    assert isinstance(parse_checkin(_v1(token="t", zone="cafe", ts=None)), CheckinMessage)
    ack = parse_ack(_v1(version=1, status="shown", ts=None, shown_at=None))
    assert isinstance(ack, AckMessage)
    assert ack.shown_at_wall is None


@given(st.datetimes(timezones=st.just(UTC)))
def test_every_utc_instant_round_trips(stamp: datetime) -> None:
    text = stamp.isoformat().replace("+00:00", "Z")
    assert parse_utc(text) == stamp.timestamp()


@given(st.integers())
def test_ack_version_is_bounded_to_what_sqlite_holds(version: int) -> None:
    parsed = parse_ack(_v1(version=version, status="shown"))
    if 0 < version < 2**63:
        assert isinstance(parsed, AckMessage)
        assert parsed.version == version
    else:
        assert parsed == Rejected("bad_version")


def test_ack_version_edges() -> None:
    assert parse_ack(_v1(version=2**66, status="shown")) == Rejected("bad_version")
    assert parse_ack(_v1(version=2**63, status="shown")) == Rejected("bad_version")
    assert isinstance(parse_ack(_v1(version=2**63 - 1, status="shown")), AckMessage)
    assert parse_ack(_v1(version=0, status="shown")) == Rejected("bad_version")
    assert parse_ack(_v1(version=1.0, status="shown")) == Rejected("bad_version")


NOW = 1_795_342_503.0  # a fixed instant: nothing here reads the wall clock


@given(
    shown=st.floats(min_value=-1e11, max_value=3e11, allow_nan=False),
    decided_ago=st.floats(min_value=0, max_value=90 * 86_400),
)
def test_shown_at_is_believed_only_between_the_decision_and_the_ack(shown: float, decided_ago: float) -> None:
    decided = NOW - decided_ago
    at, replaced = exposure_time(shown, decided, NOW)
    plausible = decided - MAX_CLOCK_SKEW_S <= shown <= NOW + MAX_CLOCK_SKEW_S
    assert replaced is not plausible
    assert at == (shown if plausible else NOW)
    # whatever is stored is a time the cloud accepts (1970 .. 9998) and SQLite's REAL holds
    assert 0 <= at < 253_402_300_800


def test_shown_at_far_off_is_replaced_by_the_ack_time() -> None:
    year_9999 = parse_ack(_v1(version=1, status="shown", shown_at="9999-12-31T23:59:59Z"))
    assert isinstance(year_9999, AckMessage)
    assert exposure_time(year_9999.shown_at_wall, NOW - 1, NOW) == (NOW, True)
    assert exposure_time(0.0, NOW - 1, NOW) == (NOW, True)  # a Pi without a real-time clock: 1970
    assert exposure_time(NOW - 0.5, NOW - 1, NOW) == (NOW - 0.5, False)
    assert exposure_time(NOW + 60, NOW - 1, NOW) == (NOW + 60, False)  # a display a minute fast: believed
    assert exposure_time(None, NOW - 1, NOW) == (NOW, False)  # no shown_at: the ack's time, nothing wrong
