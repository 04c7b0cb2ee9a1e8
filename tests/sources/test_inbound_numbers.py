"""Every numeric field of every inbound payload, fed junk numbers (issue 18).

Each parser gets a valid example with one field replaced by a huge integer (a 401-digit one among them), a
float, NaN, ±inf, a bool or a string, written as raw JSON text so that literals ``json.dumps`` never writes
(``1e400``, ``-Infinity``) reach the parser too. The property, per parser: it returns a parsed message or
a rejection whose reason is documented, it never raises, and any number it accepts is finite and within the
bounds its module documents.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hypothesis import example, given
from hypothesis import strategies as st

from edge.act.devices import adapter_for
from edge.act.devices.base import MAX_STATE_NUMBER, MIN_MIRED, DeviceMessageError, Heard
from edge.context.weather import MAX_TEMP_C, MIN_TEMP_C, Reading, parse_sensor
from edge.flow.staff import ACTIONS, COLLECTED, read_ack
from edge.identity import generate_keypair
from edge.privacy.request import PrivacyRequest, RequestRefused, verify_request
from edge.sources.espresense import RSSI_MAX, RSSI_MIN, Anonymous, RemoteEid, parse_report
from edge.sources.payloads import (
    MAX_ACK_VERSION,
    MAX_AMOUNT,
    MAX_ITEM_QTY,
    MAX_TXN_WALL,
    MIN_TXN_WALL,
    AckMessage,
    Availability,
    CheckinMessage,
    Rejected,
    TransactionMessage,
    json_envelope,
    parse_ack,
    parse_availability,
    parse_checkin,
    parse_transaction,
)
from edge.sources.privacy import PrivacyAction, parse_privacy_action
from edge.sources.rejections import DeviceReject, Kind, StaffAckReject, reasons_of
from edge.sync.parse import MAX_SQL_INT, AnswerError, ChangeError, parse_change, parse_page
from tests.decide.devices.rooms import fitting_room

HUGE = "9" * 401
# Raw JSON number texts, a few of which json.dumps never writes (1e400 reads as inf, NaN as nan).
LITERALS = [
    HUGE,
    "-" + HUGE,
    str(2**63),
    str(-(2**63) - 1),
    str(2**64),
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.7976931348623157e308",
    "5e-324",
    "-0.0",
    "0",
    "1",
    "1.0",
    "-1",
    "0.5",
    "true",
    "false",
    "null",
    '"12"',
    '"NaN"',
    "[1]",
    '{"n": 1}',
]
numbers = st.one_of(
    st.sampled_from(LITERALS),
    st.integers().map(str),
    st.integers(min_value=-(10**420), max_value=10**420).map(str),
    st.floats().map(json.dumps),  # NaN, Infinity, -Infinity included
)
_MARK = "\u2063numbers-under-test\u2063"


def with_field(example_body: dict[str, Any], path: tuple[str | int, ...], literal: str) -> bytes:
    """``example_body`` with the field at ``path`` replaced by the raw JSON text ``literal``."""
    body = json.loads(json.dumps(example_body))
    holder: Any = body
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = _MARK
    return json.dumps(body).replace(json.dumps(_MARK), literal).encode()


def finite(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_the_payloads_carry_the_raw_literal() -> None:
    payload = with_field({"v": 1, "a": {"b": [0]}}, ("a", "b", 0), HUGE)
    assert payload == b'{"v": 1, "a": {"b": [' + HUGE.encode() + b"]}}"
    assert json.loads(with_field({"x": 0}, ("x",), "1e400"))["x"] == math.inf


# --- ESPresense -------------------------------------------------------------------------------------------

ESPRESENSE_TOPIC = "espresense/devices/eid:0011223344556677/kitchen"
ESPRESENSE = {
    "id": "eid:0011223344556677",
    "rssi": -67,
    "rssi@1m": -59,
    "raw": 2.1,
    "distance": 1.9,
    "speed": 0.1,
    "mac": "aabbccddeeff",
    "interval": 100,
    "tx": -12,
}


@given(st.sampled_from([k for k, v in ESPRESENSE.items() if not isinstance(v, str)]), numbers)
@example("rssi", HUGE)
@example("rssi", "-" + HUGE)
@example("rssi", "-1e400")
def test_espresense_numbers(field: str, literal: str) -> None:
    parsed = parse_report(ESPRESENSE_TOPIC, with_field(ESPRESENSE, (field,), literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.ESPRESENSE)
        assert field == "rssi"  # only the RSSI is read: every other field is ignored
        return
    assert isinstance(parsed, RemoteEid)
    assert type(parsed.rssi) is int
    assert RSSI_MIN <= parsed.rssi <= RSSI_MAX


def test_espresense_huge_rssi_is_bad_rssi() -> None:
    for literal in (HUGE, "-" + HUGE, "1e400", "NaN", "true", '"-60"'):
        assert parse_report(ESPRESENSE_TOPIC, with_field(ESPRESENSE, ("rssi",), literal)) == Rejected(
            "bad_rssi"
        )
    anonymous = parse_report("espresense/devices/aa:bb/kitchen", with_field(ESPRESENSE, ("rssi",), "-60.4"))
    assert isinstance(anonymous, Anonymous)


# --- check-in, ack, POS, availability, privacy action --------------------------------------------------------

CHECKIN = {
    "v": 1,
    "ts": "2026-11-01T10:00:00Z",
    "token": "a.b.c",
    "zone": "entrance",
    "source": "app",
    "reply_to": "r-1",
    "cart": ["sku-1"],
}


@given(
    st.sampled_from([("v",), ("ts",), ("token",), ("zone",), ("source",), ("reply_to",), ("cart", 0)]),
    numbers,
)
def test_checkin_numbers(path: tuple[str | int, ...], literal: str) -> None:
    parsed = parse_checkin(with_field(CHECKIN, path, literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.CHECKIN)
        return
    assert isinstance(parsed, CheckinMessage)
    # No field is a number: only v's exact integer 1, null for an optional field, or a string where a string
    # belongs (an id may be "12") is accepted.
    assert (
        (path, literal) == (("v",), "1")
        or (literal == "null" and path in {("ts",), ("reply_to",)})
        or (isinstance(json.loads(literal), str) and path != ("v",))
    )
    assert all(isinstance(text, str) for text in (parsed.token, parsed.zone, parsed.source, *parsed.cart))


ACK = {
    "v": 1,
    "ts": "2026-11-01T10:00:00Z",
    "version": 1_790_000_000_000,
    "decision_id": "d-1",
    "status": "shown",
    "shown_at": "2026-11-01T10:00:00Z",
}


@given(st.sampled_from(list(ACK)), numbers)
@example("version", str(2**63))
@example("version", HUGE)
def test_ack_numbers(field: str, literal: str) -> None:
    parsed = parse_ack(with_field(ACK, (field,), literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.ACK)
        return
    assert isinstance(parsed, AckMessage)
    assert type(parsed.version) is int
    assert 0 < parsed.version <= MAX_ACK_VERSION
    assert parsed.shown_at_wall is None or finite(parsed.shown_at_wall)


POS = {
    "v": 1,
    "txn_id": "t-1",
    "token": "a.b.c",
    "items": [{"sku": "sku-1", "qty": 2, "price": 3.5, "category": "coffee"}],
    "total": 7.0,
    "currency": "EUR",
    "ts": "2026-11-01T10:00:00Z",
    "collected_orders": ["ord-1"],
}
POS_PATHS = [
    ("v",),
    ("txn_id",),
    ("token",),
    ("items",),
    ("items", 0),
    ("items", 0, "sku"),
    ("items", 0, "qty"),
    ("items", 0, "price"),
    ("items", 0, "category"),
    ("total",),
    ("currency",),
    ("ts",),
    ("collected_orders",),
    ("collected_orders", 0),
]


@given(st.sampled_from(POS_PATHS), numbers)
@example(("items", 0, "qty"), HUGE)
@example(("items", 0, "price"), "1e400")
@example(("total",), "-" + HUGE)
def test_pos_numbers(path: tuple[str | int, ...], literal: str) -> None:
    parsed = parse_transaction(with_field(POS, path, literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.POS)
        return
    assert isinstance(parsed, TransactionMessage)
    for item in parsed.items:
        assert type(item.qty) is int
        assert 0 < item.qty <= MAX_ITEM_QTY
        assert finite(item.price)
        assert 0 <= item.price <= MAX_AMOUNT
    assert parsed.total is None or (finite(parsed.total) and 0 <= parsed.total <= MAX_AMOUNT)
    assert finite(parsed.amount)
    assert parsed.ts_wall is None or MIN_TXN_WALL <= parsed.ts_wall < MAX_TXN_WALL


@given(st.sampled_from(["state", "v"]), numbers)
def test_availability_numbers(field: str, literal: str) -> None:
    parsed = parse_availability(with_field({"v": 1, "state": "online"}, (field,), literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.AVAILABILITY)
        return
    assert parsed is Availability.ONLINE
    assert field == "v"


PRIVACY = {
    "v": 1,
    "ts": "2026-11-01T10:00:00Z",
    "token": "a.b.c",
    "action": "consent",
    "purpose": "personalization",
    "granted": False,
    "source": "kiosk",
    "reply_to": "r-1",
}


@given(st.sampled_from(list(PRIVACY)), numbers)
def test_privacy_action_numbers(field: str, literal: str) -> None:
    parsed = parse_privacy_action(with_field(PRIVACY, (field,), literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.PRIVACY)
        return
    assert isinstance(parsed, PrivacyAction)
    assert parsed.granted is None or type(parsed.granted) is bool


@given(st.sampled_from(["v", "notice_id", "action"]), numbers)
@example("action", "[1]")
@example("action", '{"n": 1}')
def test_staff_ack_numbers(field: str, literal: str) -> None:
    body = json_envelope(with_field({"v": 1, "notice_id": "n-1", "action": "assisting"}, (field,), literal))
    if isinstance(body, Rejected):
        assert body.reason in reasons_of(Kind.STAFF_ACK)
        return
    fields = read_ack(body)
    if isinstance(fields, StaffAckReject):
        assert fields in reasons_of(Kind.STAFF_ACK)
        return
    notice_id, action = fields
    assert notice_id == "n-1" or (field == "notice_id" and literal.startswith('"'))
    assert action in ACTIONS or action == COLLECTED


PRIVACY_REQUEST = {
    "aud": "s-1",
    "kind": "export",
    "request_id": "r-1",
    "sub": "p-1",
    "iat": 1_796_000_000,
    "exp": 1_796_003_600,
}
_REQUEST_KEY, _REQUEST_PUBLIC = generate_keypair()


@given(st.sampled_from(["iat", "exp", "request_id", "sub", "kind"]), numbers)
@example("exp", HUGE)
@example("iat", "-" + HUGE)
@example("exp", "NaN")
def test_privacy_request_numbers(field: str, literal: str) -> None:
    claims = json.loads(with_field(PRIVACY_REQUEST, (field,), literal))
    token = jwt.encode(claims, _REQUEST_KEY, algorithm="EdDSA").encode()
    public = load_pem_public_key(_REQUEST_PUBLIC)
    assert isinstance(public, Ed25519PublicKey)
    parsed = verify_request(token, lambda _kid: [public], "s-1", 1_796_000_100.0)
    if isinstance(parsed, RequestRefused):
        assert parsed.reason in reasons_of(Kind.PRIVACY_REQUEST)
        return
    assert isinstance(parsed, PrivacyRequest)
    assert field not in {"iat", "exp"} or finite(json.loads(literal))


# --- the weather sensor -------------------------------------------------------------------------------------

WEATHER = {
    "v": 1,
    "ts": "2026-11-01T10:00:00Z",
    "temp_c": 12.5,
    "precipitation": False,
    "forecast_max_c": 14,
    "observed_at": "2026-11-01T10:00:00Z",
}


@given(st.sampled_from(list(WEATHER)), numbers)
@example("temp_c", HUGE)
@example("forecast_max_c", "-1e400")
def test_weather_sensor_numbers(field: str, literal: str) -> None:
    parsed = parse_sensor(with_field(WEATHER, (field,), literal))
    if isinstance(parsed, Rejected):
        assert parsed.reason in reasons_of(Kind.WEATHER)
        return
    assert isinstance(parsed, Reading)
    assert finite(parsed.temp_c)
    assert MIN_TEMP_C <= parsed.temp_c <= MAX_TEMP_C
    assert parsed.forecast_max_c is None or MIN_TEMP_C <= parsed.forecast_max_c <= MAX_TEMP_C
    assert finite(parsed.observed_wall)


# --- device state ------------------------------------------------------------------------------------------

LIGHT = {
    "brightness": {"default": 80, "min": 10, "max": 100, "step": 5},
    "color_temp": {"default": 4000, "min": 2700, "max": 6500, "step": 100},
}
DEVICES: dict[str, tuple[Callable[[], Any], str, dict[str, Any]]] = {
    "zigbee2mqtt": (
        lambda: adapter_for(
            fitting_room(
                kind="light",
                address="l1",
                capabilities={**LIGHT, "fan": {"default": 1, "min": 0, "max": 3, "step": 1}},
            )
        ),
        "zigbee2mqtt/l1",
        {"state": "ON", "brightness": 127, "color_temp": 370, "fan": 2, "linkquality": 80},
    ),
    "zigbee2mqtt-trv": (
        lambda: adapter_for(
            fitting_room(
                address="trv",
                capabilities={"temperature": {"default": 21, "min": 18, "max": 25, "step": 0.5}},
                zigbee2mqtt={"setpoint": "occupied_heating_setpoint"},
            )
        ),
        "zigbee2mqtt/trv",
        {"occupied_heating_setpoint": 22.5, "local_temperature": 19.1},
    ),
    "tasmota": (
        lambda: adapter_for(fitting_room(adapter="tasmota", address="t1", capabilities=LIGHT)),
        "stat/t1/RESULT",
        {"POWER": "ON", "Dimmer": 50, "CT": 370},
    ),
    "generic": (
        lambda: adapter_for(
            fitting_room(
                adapter="generic",
                kind="kiosk",
                address="k1",
                capabilities={
                    "text_scale": {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.1},
                    "language": {"type": "choice", "default": "en", "values": ["en", "de"]},
                },
                generic={
                    "command_topic": "kiosks/{address}/prefs",
                    "state_topic": "kiosks/{address}/state",
                    "fields": {"text_scale": "fontScale"},
                },
            )
        ),
        "kiosks/k1/state",
        {"fontScale": 1.4, "language": "de"},
    ),
}
DEVICE_FIELDS = [(name, field) for name, (_, _, report) in DEVICES.items() for field in report]


def test_every_device_example_is_heard() -> None:
    for name, (make, topic, report) in DEVICES.items():
        heard = make().hear(topic, json.dumps(report).encode())
        assert isinstance(heard, Heard), name
        assert heard.state, name


@given(st.sampled_from(DEVICE_FIELDS), numbers)
@example(("zigbee2mqtt", "brightness"), HUGE)
@example(("zigbee2mqtt", "color_temp"), "5e-324")
@example(("tasmota", "CT"), "1e-400")
@example(("tasmota", "Dimmer"), "1e400")
def test_device_state_numbers(device_field: tuple[str, str], literal: str) -> None:
    name, field = device_field
    make, topic, report = DEVICES[name]
    try:
        heard = make().hear(topic, with_field(report, (field,), literal))
    except DeviceMessageError as error:
        refused = error.reason
    else:
        refused = None
    if refused is not None:
        assert refused in set(DeviceReject)
        return
    assert isinstance(heard, Heard)
    for value in (heard.state or {}).values():
        if isinstance(value, str):
            continue
        assert finite(value)
        assert -MAX_STATE_NUMBER <= value <= MAX_STATE_NUMBER


def test_a_colour_temperature_below_one_mired_is_refused() -> None:
    make, topic, report = DEVICES["tasmota"]
    with pytest.raises(DeviceMessageError):
        make().hear(topic, with_field(report, ("CT",), str(MIN_MIRED / 2)))


# --- the cloud's changes (sync) -----------------------------------------------------------------------------

AT = "2026-11-01T10:00:00Z"
CHANGES: dict[str, dict[str, Any]] = {
    "inventory": {"seq": 1, "kind": "inventory", "id": "o-1", "op": "upsert", "at": AT,
                  "data": {"available": True, "quantity": 3}},
    "eid_key": {"seq": 1, "kind": "eid_key", "id": "p-1", "op": "upsert", "at": AT,
                "data": {"identity_key": base64.b64encode(bytes(16)).decode(), "rotation_exponent": 10,
                         "clock_offset_s": 5}},
    "weather": {"seq": 1, "kind": "weather", "id": "store", "op": "upsert", "at": AT,
                "data": {"temp_c": 12.5, "precipitation": False, "forecast_max_c": 14, "observed_at": AT}},
    "offer": {"seq": 1, "kind": "offer", "id": "o-1", "op": "upsert", "at": AT,
              "data": {"id": "o-1", "title": "t", "category": "coffee", "value": 2.0}},
    "profile": {"seq": 1, "kind": "profile", "id": "p-1", "op": "upsert", "at": AT,
                "data": {"profile": {"visits": 1, "segment": "new"}}},
}  # fmt: skip
CHANGE_PATHS = [("seq",), ("at",)] + [
    (kind, "data", field) for kind, change in CHANGES.items() for field in change["data"]
]


@given(st.sampled_from(list(CHANGES)), st.sampled_from(CHANGE_PATHS), numbers)
@example("inventory", ("inventory", "data", "quantity"), str(2**63))
@example("inventory", ("seq",), HUGE)
@example("profile", ("profile", "data", "profile"), HUGE)
def test_sync_change_numbers(kind: str, path: tuple[str, ...], literal: str) -> None:
    if path[0] in CHANGES and path[0] != kind:
        return
    field_path = path[1:] if path[0] in CHANGES else path
    document = json.loads(
        with_field({"changes": [CHANGES[kind]], "cursor": "9"}, ("changes", 0, *field_path), literal)
    )
    try:
        page = parse_page(document)
    except AnswerError as error:
        refused = error.reason
    else:
        refused = None
    if refused is not None:
        assert (refused, field_path) == ("bad_page", ("seq",))
        return
    for change in page.changes:
        assert 0 <= change.seq <= MAX_SQL_INT
        assert finite(change.at_wall)
        _assert_finite_numbers(change.data)
    if kind == "inventory" and page.changes:
        quantity = page.changes[0].data["quantity"]
        assert quantity is None or 0 <= quantity <= MAX_SQL_INT
    assert sum(page.rejected.values()) + len(page.changes) == 1


def test_sync_bounds_reach_parse_change() -> None:
    with pytest.raises(ChangeError):
        parse_change(json.loads(with_field(CHANGES["inventory"], ("data", "quantity"), str(2**63))))


def _assert_finite_numbers(value: object) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert -MAX_SQL_INT - 1 <= value <= MAX_SQL_INT
    elif isinstance(value, dict):
        for item in value.values():
            _assert_finite_numbers(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _assert_finite_numbers(item)
