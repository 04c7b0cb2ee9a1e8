"""The context's parsers, first: a sensor's weather reading, the cloud's `weather` change, an app's cart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge.context.weather import Reading, parse_sensor
from edge.sources.payloads import MAX_CART_ITEMS, CheckinMessage, Rejected, parse_checkin
from edge.sources.rejections import CheckinReject, Envelope, WeatherReject
from edge.sync.parse import parse_page
from edge.sync.wire import ChangeKind

OBSERVED = "2027-03-01T08:30:00Z"
OBSERVED_WALL = 1_803_889_800.0  # OBSERVED as unix seconds


def sensor(**fields: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "temp_c": 21.5, "precipitation": False, "observed_at": OBSERVED}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_a_sensor_reading_is_read_with_its_fields() -> None:
    assert parse_sensor(sensor(forecast_max_c=27)) == Reading(21.5, False, 27.0, OBSERVED_WALL)
    assert parse_sensor(sensor(forecast_max_c=None, precipitation=True)) == Reading(
        21.5, True, None, OBSERVED_WALL
    )
    assert parse_sensor(sensor(temp_c=-3)) == Reading(-3.0, False, None, OBSERVED_WALL)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff", Envelope.NOT_UTF8),
        (b"{", Envelope.NOT_JSON),
        (b"[]", Envelope.NOT_OBJECT),
        (sensor(v=...), Envelope.MISSING_VERSION),
        (sensor(v=2), Envelope.UNSUPPORTED_VERSION),
        (sensor(ts="yesterday"), WeatherReject.BAD_TS),
        (sensor(temp_c=...), WeatherReject.BAD_TEMP),
        (sensor(temp_c="21"), WeatherReject.BAD_TEMP),
        (sensor(temp_c=True), WeatherReject.BAD_TEMP),
        (sensor(temp_c=70.5), WeatherReject.BAD_TEMP),  # Fahrenheit
        (sensor(temp_c=294.6), WeatherReject.BAD_TEMP),  # Kelvin
        (sensor(temp_c=10**400), WeatherReject.BAD_TEMP),  # no float overflow
        (
            b'{"v":1,"temp_c":NaN,"precipitation":false,"observed_at":"2027-03-01T08:30:00Z"}',
            WeatherReject.BAD_TEMP,
        ),
        (sensor(precipitation=...), WeatherReject.BAD_PRECIPITATION),
        (sensor(precipitation=0), WeatherReject.BAD_PRECIPITATION),
        (sensor(forecast_max_c=-100), WeatherReject.BAD_FORECAST),
        (sensor(forecast_max_c="hot"), WeatherReject.BAD_FORECAST),
        (sensor(observed_at=...), WeatherReject.BAD_OBSERVED_AT),
        (sensor(observed_at="2027-03-01T09:30:00+01:00"), WeatherReject.BAD_OBSERVED_AT),  # UTC only
        (sensor(observed_at="2027-02-30T08:00:00Z"), WeatherReject.BAD_OBSERVED_AT),
    ],
)
def test_a_bad_sensor_reading_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    assert parse_sensor(payload) == Rejected(reason)


def page(data: dict[str, Any], op: str = "upsert") -> dict[str, Any]:
    change = {"seq": 1, "kind": "weather", "id": "store-1", "op": op, "at": OBSERVED, "data": data}
    return {"changes": [change], "cursor": "c-1", "more": False}


def test_the_clouds_weather_change_is_read_and_a_bad_one_is_a_counted_rejection() -> None:
    good = {"temp_c": 31, "precipitation": False, "forecast_max_c": 34.5, "observed_at": OBSERVED}
    parsed = parse_page(page(good))
    assert parsed.rejected == {}
    [change] = parsed.changes
    assert change.kind is ChangeKind.WEATHER
    assert change.data == {
        "temp_c": 31.0,
        "precipitation": False,
        "forecast_max_c": 34.5,
        "observed_wall": OBSERVED_WALL,
    }
    for bad in (
        {**good, "temp_c": 99},
        {**good, "precipitation": "no"},
        {**good, "forecast_max_c": float("inf")},
        {key: value for key, value in good.items() if key != "observed_at"},
    ):
        rejected = parse_page(page(bad))
        assert rejected.changes == []
        assert rejected.rejected == {"bad_weather": 1}
    # Never deleted: a newer reading replaces it, and it goes stale by itself.
    assert parse_page(page({}, op="delete")).rejected == {"bad_op": 1}


def checkin(**fields: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "token": "t.t.t", "zone": "cafe", "source": "app"}
    body.update(fields)
    return json.dumps(body).encode()


def test_an_app_check_in_carries_its_cart() -> None:
    parsed = parse_checkin(checkin(cart=["sku-1", "sku-2", "sku-1"]))
    assert isinstance(parsed, CheckinMessage)
    assert parsed.cart == ("sku-1", "sku-2", "sku-1")  # as sent; the basket keeps distinct SKUs
    assert parse_checkin(checkin(cart=[])) == CheckinMessage("t.t.t", "cafe", "app")
    assert parse_checkin(checkin(cart=None)) == CheckinMessage("t.t.t", "cafe", "app")
    full = parse_checkin(checkin(cart=[f"s{i}" for i in range(MAX_CART_ITEMS)]))
    assert isinstance(full, CheckinMessage)
    assert len(full.cart) == MAX_CART_ITEMS


@pytest.mark.parametrize(
    "fields",
    [
        {"cart": "sku-1"},
        {"cart": {"sku": "sku-1"}},
        {"cart": ["sku 1"]},  # not an id
        {"cart": [""]},
        {"cart": [7]},
        {"cart": [{"sku": "a"}]},
        {"cart": ["x" * 65]},
        {"cart": [f"s{i}" for i in range(MAX_CART_ITEMS + 1)]},
        {"cart": ["sku-1"], "source": "kiosk"},  # scan-and-go is the app's
    ],
)
def test_a_bad_cart_refuses_the_check_in(fields: dict[str, Any]) -> None:
    assert parse_checkin(checkin(**fields)) == Rejected(CheckinReject.BAD_CART)
