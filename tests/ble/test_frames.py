"""Frame parsers: each frame built from its spec layout, URL expansion, TLM edge values, malformed input
returned as None and counted, and arbitrary bytes never raising."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import Advert
from edge.sources.ble.frames import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    REJECTION_REASONS,
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    EncryptedTlm,
    FrameCounter,
    IBeacon,
    parse_advert,
    parse_eddystone,
    parse_ibeacon,
)

STORE_UUID = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
NAMESPACE = bytes.fromhex("8b0ca750095477cb3e77")  # the spec's elided-UUID example
INSTANCE = bytes.fromhex("0000000000a1")
EID = bytes.fromhex("0011223344556677")

FRAME_TYPES = (IBeacon, EddystoneUid, EddystoneUrl, EddystoneTlm, EncryptedTlm, EddystoneEid)


# ----- builders, from the spec tables (Apple iBeacon; google/eddystone eddystone-*/README.md) -----
def ibeacon(major: int = 1, minor: int = 2, power: int = -59, beacon_uuid: uuid.UUID = STORE_UUID) -> bytes:
    return b"\x02\x15" + beacon_uuid.bytes + struct.pack(">HHb", major, minor, power)


def uid(tx_power: int = -20, *, rfu: bool = True) -> bytes:
    return struct.pack(">Bb", 0x00, tx_power) + NAMESPACE + INSTANCE + (b"\x00\x00" if rfu else b"")


def url(scheme: int, encoded: bytes, tx_power: int = -18) -> bytes:
    return struct.pack(">BbB", 0x10, tx_power, scheme) + encoded


def tlm(
    battery_mv: int = 3000, temperature: int = 0x1780, adv_count: int = 123_456, uptime: int = 98_765
) -> bytes:
    return struct.pack(">BBHHII", 0x20, 0x00, battery_mv, temperature & 0xFFFF, adv_count, uptime)


def etlm() -> bytes:
    return b"\x20\x01" + bytes(range(12)) + b"\xab\xcd" + b"\x12\x34"


def eid(tx_power: int = -10) -> bytes:
    return struct.pack(">Bb", 0x30, tx_power) + EID


def advert(
    manufacturer_data: dict[int, bytes] | None = None, service_data: dict[str, bytes] | None = None
) -> Advert:
    return Advert("local:hci0", "AA:BB:CC:DD:EE:FF", -60, 1.0, manufacturer_data or {}, service_data or {})


# ----- iBeacon -----
def test_ibeacon() -> None:
    frame = parse_ibeacon(ibeacon(major=4660, minor=65535, power=-59))
    assert frame == IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 4660, 65535, -59)
    assert frame.key == "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:4660:65535"


def test_ibeacon_uuid_is_lower_case_with_dashes() -> None:
    frame = parse_ibeacon(ibeacon(beacon_uuid=uuid.UUID(bytes=bytes(range(0xF0, 0x100)))))
    assert frame is not None
    assert frame.uuid == "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff"


def test_other_apple_adverts_are_not_ibeacons_and_not_malformed() -> None:
    counter = FrameCounter()
    for data in (b"", b"\x10\x05\x01\x18\x1c\x6a\x0e", b"\x12\x19" + bytes(25), b"\x07\x19" + bytes(25)):
        assert parse_ibeacon(data, counter) is None
    assert counter == {}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02", "ibeacon_short"),
        (b"\x02\x15", "ibeacon_short"),
        (ibeacon()[:-1], "ibeacon_short"),
        (b"\x02\x14" + ibeacon()[2:], "ibeacon_bad_length"),
        (b"\x02\x16" + ibeacon()[2:] + b"\x00", "ibeacon_bad_length"),
    ],
)
def test_malformed_ibeacons_are_counted(data: bytes, reason: str) -> None:
    counter = FrameCounter()
    assert parse_ibeacon(data, counter) is None
    assert counter == {reason: 1}


# ----- Eddystone-UID -----
@pytest.mark.parametrize("rfu", [True, False])
def test_uid_with_and_without_rfu_bytes(rfu: bool) -> None:
    frame = parse_eddystone(uid(-20, rfu=rfu))
    assert frame == EddystoneUid(-20, "8b0ca750095477cb3e77", "0000000000a1")
    assert frame.key == "eddystone-uid:8b0ca750095477cb3e77:0000000000a1"


# ----- Eddystone-URL -----
@pytest.mark.parametrize(
    ("scheme", "encoded", "expected"),
    [
        (0x03, b"goo.gl/S6zT6P", "https://goo.gl/S6zT6P"),  # the spec's example
        (0x00, b"example\x07", "http://www.example.com"),
        (0x01, b"shop\x00deals", "https://www.shop.com/deals"),
        (0x02, b"a\x01b\x02c\x03d\x04e\x05f\x06", "http://a.org/b.edu/c.net/d.info/e.biz/f.gov/"),
        (0x03, b"a\x08b\x09c\x0ad\x0be\x0cf\x0d", "https://a.orgb.educ.netd.infoe.bizf.gov"),
        (0x02, b"", "http://"),
        (0x02, b"!~", "http://!~"),  # the printable range's ends
    ],
)
def test_url_expansion(scheme: int, encoded: bytes, expected: str) -> None:
    assert parse_eddystone(url(scheme, encoded)) == EddystoneUrl(-18, expected)


def test_url_tx_power_is_signed() -> None:
    frame = parse_eddystone(url(0x02, b"x", tx_power=0x12))
    assert isinstance(frame, EddystoneUrl)
    assert frame.tx_power == 18
    frame = parse_eddystone(bytes([0x10, 0xEE, 0x02]) + b"x")  # the spec's example: 0xEE is -18 dBm
    assert isinstance(frame, EddystoneUrl)
    assert frame.tx_power == -18


@pytest.mark.parametrize("scheme", [0x04, 0x10, 0xFF])
def test_url_bad_scheme(scheme: int) -> None:
    counter = FrameCounter()
    assert parse_eddystone(url(scheme, b"example\x07"), counter) is None
    assert counter == {"url_bad_scheme": 1}


@pytest.mark.parametrize("byte", [0x0E, 0x20, 0x7F, 0x80, 0xFF])
def test_url_reserved_bytes(byte: int) -> None:
    counter = FrameCounter()
    assert parse_eddystone(url(0x02, b"ab" + bytes([byte]) + b"cd"), counter) is None
    assert counter == {"url_bad_char": 1}


# ----- Eddystone-TLM -----
def test_tlm() -> None:
    frame = parse_eddystone(tlm(battery_mv=3000, temperature=0x1780, adv_count=123_456, uptime=98_765))
    assert frame == EddystoneTlm(3000, 23.5, 123_456, 9876.5)


@pytest.mark.parametrize(
    ("raw", "celsius"),
    [(-1344, -5.25), (-1, -1 / 256), (0xFF00 - 0x10000, -1.0), (0x7FFF, 127 + 255 / 256), (0, 0.0)],
)
def test_tlm_temperature_is_signed_8_8(raw: int, celsius: float) -> None:
    frame = parse_eddystone(tlm(temperature=raw))
    assert isinstance(frame, EddystoneTlm)
    assert frame.temperature_c == celsius


def test_tlm_unsupported_values_are_none() -> None:
    frame = parse_eddystone(tlm(battery_mv=0, temperature=0x8000))
    assert frame == EddystoneTlm(None, None, 123_456, 9876.5)


def test_tlm_counters_are_unsigned_32_bit() -> None:
    frame = parse_eddystone(tlm(adv_count=2**32 - 1, uptime=2**32 - 1, battery_mv=65535))
    assert frame == EddystoneTlm(65535, 23.5, 2**32 - 1, (2**32 - 1) / 10)


def test_encrypted_tlm_is_an_opaque_marker() -> None:
    counter = FrameCounter()
    assert parse_eddystone(etlm(), counter) == EncryptedTlm(bytes(range(12)), 0xABCD, 0x1234)
    assert counter == {}


def test_tlm_unknown_version() -> None:
    counter = FrameCounter()
    assert parse_eddystone(b"\x20\x02" + tlm()[2:], counter) is None
    assert counter == {"tlm_unknown_version": 1}


# ----- Eddystone-EID -----
def test_eid() -> None:
    frame = parse_eddystone(eid(-10))
    assert frame == EddystoneEid(-10, EID)
    assert isinstance(frame.eid, bytes)


def test_eid_from_a_bytearray_is_hashable_bytes() -> None:
    frame = parse_eddystone(bytearray(eid()))  # type: ignore[arg-type]  # a caller may hand one in
    assert isinstance(frame, EddystoneEid)
    assert type(frame.eid) is bytes
    assert {frame.eid: "ok"}[EID] == "ok"


# ----- truncation, garbage and counting -----
@pytest.mark.parametrize(
    ("frame", "minimum"),
    [(uid(rfu=False), 18), (url(0x02, b""), 3), (tlm(), 14), (etlm(), 18), (eid(), 10)],
)
def test_every_truncation_is_none_and_counted(frame: bytes, minimum: int) -> None:
    assert parse_eddystone(frame) is not None
    for size in range(1, minimum):
        counter = FrameCounter()
        assert parse_eddystone(frame[:size], counter) is None, size
        assert counter == {"eddystone_truncated": 1}, size


def test_empty_and_unknown_eddystone_frames_are_counted() -> None:
    counter = FrameCounter()
    assert parse_eddystone(b"", counter) is None
    for frame_type in (0x01, 0x40, 0x50, 0xFF):
        assert parse_eddystone(bytes([frame_type]) + bytes(19), counter) is None
    assert counter == {"eddystone_empty": 1, "eddystone_unknown_type": 4}


def test_trailing_bytes_after_a_fixed_layout_are_ignored() -> None:
    assert parse_eddystone(eid() + b"\xff\xff") == EddystoneEid(-10, EID)
    assert parse_eddystone(tlm() + b"\x00") == parse_eddystone(tlm())
    assert parse_ibeacon(ibeacon() + b"\x00") == parse_ibeacon(ibeacon())


# ----- parse_advert -----
def test_parse_advert_picks_the_parser() -> None:
    assert parse_advert(advert(service_data={EDDYSTONE_SERVICE_UUID: eid()})) == EddystoneEid(-10, EID)
    assert parse_advert(advert({APPLE_COMPANY_ID: ibeacon()})) == parse_ibeacon(ibeacon())
    both = advert({APPLE_COMPANY_ID: ibeacon()}, {EDDYSTONE_SERVICE_UUID: uid()})
    assert isinstance(parse_advert(both), EddystoneUid)


def test_parse_advert_ignores_what_is_not_a_known_frame() -> None:
    counter = FrameCounter()
    assert parse_advert(advert(), counter) is None
    assert parse_advert(advert({0x0006: b"\x01\x09\x20\x02"}), counter) is None  # Microsoft
    assert parse_advert(advert({0x004D: ibeacon()}), counter) is None  # not Apple's id
    other_service = "0000fe9f-0000-1000-8000-00805f9b34fb"  # Google Fast Pair-like
    assert parse_advert(advert(service_data={other_service: eid()}), counter) is None
    assert parse_advert(advert(service_data={EDDYSTONE_SERVICE_UUID.upper(): eid()}), counter) is None
    assert counter == {}


def test_parse_advert_counts_malformed_frames() -> None:
    counter = FrameCounter()
    parse_advert(advert(service_data={EDDYSTONE_SERVICE_UUID: eid()[:5]}), counter)
    parse_advert(advert({APPLE_COMPANY_ID: ibeacon()[:10]}), counter)
    parse_advert(advert({APPLE_COMPANY_ID: ibeacon()[:10]}), counter)
    assert counter == {"eddystone_truncated": 1, "ibeacon_short": 2}
    assert counter.total() == 3


# ----- properties -----
def check(result: Any, counter: FrameCounter) -> None:
    assert result is None or isinstance(result, FRAME_TYPES)
    assert set(counter) <= REJECTION_REASONS
    assert counter.total() <= 1  # one call counts at most once
    if result is not None:
        assert counter.total() == 0  # a parsed frame is never counted as malformed


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    counter = FrameCounter()
    check(parse_eddystone(data, counter), counter)
    counter = FrameCounter()
    check(parse_ibeacon(data, counter), counter)
    assert parse_eddystone(data) == parse_eddystone(data, FrameCounter())


@settings(max_examples=300)
@given(st.sampled_from([0x00, 0x10, 0x20, 0x30]), st.binary(max_size=30))
def test_arbitrary_bodies_of_known_types_never_raise(frame_type: int, body: bytes) -> None:
    counter = FrameCounter()
    check(parse_eddystone(bytes([frame_type]) + body, counter), counter)
    counter = FrameCounter()
    check(parse_ibeacon(b"\x02" + bytes([frame_type]) + body, counter), counter)


service_keys = st.one_of(st.just(EDDYSTONE_SERVICE_UUID), st.text(max_size=40))
company_ids = st.one_of(st.just(APPLE_COMPANY_ID), st.integers(0, 0xFFFF))


@settings(max_examples=300)
@given(
    st.dictionaries(company_ids, st.binary(max_size=40), max_size=4),
    st.dictionaries(service_keys, st.binary(max_size=40), max_size=4),
)
def test_parse_advert_never_raises(
    manufacturer_data: dict[int, bytes], service_data: dict[str, bytes]
) -> None:
    counter = FrameCounter()
    check(parse_advert(advert(manufacturer_data, service_data), counter), counter)


@given(st.integers(-128, 127), st.binary(min_size=10, max_size=10), st.binary(min_size=6, max_size=6))
def test_uid_round_trip(tx_power: int, namespace: bytes, instance: bytes) -> None:
    frame = parse_eddystone(struct.pack(">Bb", 0, tx_power) + namespace + instance)
    assert frame == EddystoneUid(tx_power, namespace.hex(), instance.hex())


@given(st.uuids(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(-128, 127))
def test_ibeacon_round_trip(beacon_uuid: uuid.UUID, major: int, minor: int, power: int) -> None:
    frame = parse_ibeacon(ibeacon(major, minor, power, beacon_uuid))
    assert frame == IBeacon(str(beacon_uuid), major, minor, power)


@given(st.integers(-128, 127), st.binary(min_size=8, max_size=8))
def test_eid_round_trip(tx_power: int, value: bytes) -> None:
    assert parse_eddystone(struct.pack(">Bb", 0x30, tx_power) + value) == EddystoneEid(tx_power, value)
