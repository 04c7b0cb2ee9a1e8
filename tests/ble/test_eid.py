"""Eddystone-EID: the computation against an independent reference and published vectors, the resolver's
window, rollover and consent behaviour, and the keys file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.events import Purpose
from edge.identity import ConsentStore
from edge.identity.eid import (
    EidKey,
    EidKeyFileError,
    EidResolver,
    EidStats,
    compute_eid,
    load_eid_keys,
    parse_eid_keys,
)
from tests.ble.eid_reference import reference_eid
from tests.identity.conftest import MemorySink

BLE = Purpose.PRESENCE_BLE
NOW = 1_800_000_000.0  # ManualClock's default wall; a counter of 1.8e9 with a zero offset
K = 10
PERIOD = 2**K
KEY = bytes(range(16))

# The spec (google/eddystone eddystone-eid/eid-computation.md) gives no worked example. These vectors
# come from RadiusNetworks/ephemeral_calc, spec/encryptor_spec.rb (a Ruby implementation over OpenSSL):
# identity key 0102030405060708090A111213141516, K = 10, beacon time 0 -> A9B76A71C5F89290, and beacon
# time "now - 2000 s" (so any counter of the period 1024..2047) -> 4144413E45FEFA58.
RADIUS_KEY = bytes.fromhex("0102030405060708090A111213141516")
PUBLISHED_VECTORS = [
    (RADIUS_KEY, 10, 0, "a9b76a71c5f89290"),
    (RADIUS_KEY, 10, 1024, "4144413e45fefa58"),
    (RADIUS_KEY, 10, 2000, "4144413e45fefa58"),
    (RADIUS_KEY, 10, 2047, "4144413e45fefa58"),
    # A third-party Python EID test (module ``ephemeral_id_python``, test_resolver; its repository is not
    # recorded in our source index): K = 0, counter 0, with the identity key its ECDH registration derives.
    (bytes.fromhex("7c91330e61dfea4606b5b3ecb4457d76"), 0, 0, "436bfe57d5a09505"),
]

keys = st.binary(min_size=16, max_size=16)
exponents = st.integers(0, 15)
counters = st.integers(0, 2**32 - 1)


# ----- the computation -----
@pytest.mark.parametrize(("key", "exponent", "counter", "expected"), PUBLISHED_VECTORS)
def test_published_vectors(key: bytes, exponent: int, counter: int, expected: str) -> None:
    assert compute_eid(key, exponent, counter).hex() == expected
    assert reference_eid(key, exponent, counter).hex() == expected  # the reference is checked too


@settings(max_examples=300)
@given(keys, exponents, counters)
def test_matches_the_independent_reference(key: bytes, exponent: int, counter: int) -> None:
    eid = compute_eid(key, exponent, counter)
    assert len(eid) == 8
    assert eid == reference_eid(key, exponent, counter)


@given(keys, exponents, counters)
def test_one_eid_per_period(key: bytes, exponent: int, counter: int) -> None:
    start = counter - counter % 2**exponent
    assert compute_eid(key, exponent, counter) == compute_eid(key, exponent, start)
    assert compute_eid(key, exponent, counter) == compute_eid(key, exponent, start + 2**exponent - 1)


@pytest.mark.parametrize("exponent", [0, 1, 10, 15])
def test_a_new_eid_at_each_period_boundary(exponent: int) -> None:
    boundary = 7 * 2**exponent
    before, at = compute_eid(KEY, exponent, boundary - 1), compute_eid(KEY, exponent, boundary)
    assert before != at
    assert at == reference_eid(KEY, exponent, boundary)


def test_the_temporary_key_rolls_every_65536_seconds() -> None:
    # K = 16 does not exist, so with K = 15 two periods share one temporary key; across 65536 they do not.
    assert compute_eid(KEY, 15, 65535) == reference_eid(KEY, 15, 65535)
    assert compute_eid(KEY, 15, 65536) == reference_eid(KEY, 15, 65536)
    assert compute_eid(KEY, 15, 65535) != compute_eid(KEY, 15, 65536)


def test_the_exponent_is_part_of_the_eid() -> None:
    assert compute_eid(KEY, 10, 0) != compute_eid(KEY, 11, 0)


@pytest.mark.parametrize(
    ("key", "exponent", "counter"),
    [(bytes(15), 10, 0), (bytes(17), 10, 0), (KEY, -1, 0), (KEY, 16, 0), (KEY, 10, -1), (KEY, 10, 2**32)],
)
def test_compute_eid_validates(key: bytes, exponent: int, counter: int) -> None:
    with pytest.raises(ValueError):
        compute_eid(key, exponent, counter)


def test_an_eid_key_never_shows_its_secret() -> None:
    key = EidKey("p-1", KEY, K)
    assert KEY.hex() not in repr(key)
    assert str(list(KEY)) not in repr(key)
    assert "p-1" in repr(key)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"shopper_id": ""}, ValueError),
        ({"identity_key": bytes(15)}, ValueError),
        ({"identity_key": "00" * 16}, TypeError),
        ({"rotation_exponent": 16}, ValueError),
        ({"clock_offset_s": 1.5}, TypeError),
    ],
)
def test_an_eid_key_validates(kwargs: dict[str, Any], error: type[Exception]) -> None:
    fields: dict[str, Any] = {"shopper_id": "p-1", "identity_key": KEY, "rotation_exponent": K}
    fields.update(kwargs)
    with pytest.raises(error):
        EidKey(**fields)


# ----- the resolver -----
def eid_at(key: EidKey, wall: float, periods_ahead: int = 0) -> bytes:
    """The EID the shopper's phone sends at ``wall`` shifted by whole periods (computed by the reference)."""
    counter = (int(wall) + key.clock_offset_s + periods_ahead * 2**key.rotation_exponent) % 2**32
    return reference_eid(key.identity_key, key.rotation_exponent, counter)


@pytest.fixture
def clock_start() -> float:
    return NOW  # the tables below are checked at this counter, which is not near the slow key's rollover


@pytest.fixture
def key() -> EidKey:
    return EidKey("p-1", KEY, K)


def test_resolves_the_current_and_neighbouring_periods_only(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    assert resolver.add_key(key)
    for shift in (-1, 0, 1):
        assert resolver.resolve(eid_at(key, NOW, shift)) == "p-1"
    for shift in (-2, 2):
        assert resolver.resolve(eid_at(key, NOW, shift)) is None
    assert resolver.resolve(b"\x00" * 8) is None
    assert resolver.stats() == EidStats(
        keys=1, active=1, table=3, refreshes=0, resolved=3, unresolved=3, collisions=0
    )


@pytest.mark.parametrize("neighbours", [0, 2])
def test_the_window_width_is_configurable(clock: ManualClock, key: EidKey, neighbours: int) -> None:
    resolver = EidResolver(clock, neighbours=neighbours)
    resolver.add_key(key)
    assert resolver.stats().table == 2 * neighbours + 1
    assert resolver.resolve(eid_at(key, NOW, neighbours)) == "p-1"
    assert resolver.resolve(eid_at(key, NOW, neighbours + 1)) is None


def test_neighbours_are_bounded(clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        EidResolver(clock, neighbours=-1)
    with pytest.raises(ValueError):
        EidResolver(clock, neighbours=17)


def test_the_clock_offset_shifts_the_counter(clock: ManualClock) -> None:
    # An app whose counter started at 0 when it registered, 12345 s ago.
    key = EidKey("p-1", KEY, K, clock_offset_s=-int(NOW) + 12_345)
    resolver = EidResolver(clock)
    resolver.add_key(key)
    assert resolver.resolve(compute_eid(KEY, K, 12_345)) == "p-1"
    assert resolver.resolve(compute_eid(KEY, K, int(NOW))) is None


def test_the_window_wraps_with_the_32_bit_counter(clock: ManualClock) -> None:
    key = EidKey("p-1", KEY, K, clock_offset_s=2**32 - 1 - int(NOW))  # the counter is 2**32 - 1 now
    resolver = EidResolver(clock)
    resolver.add_key(key)
    assert resolver.resolve(compute_eid(KEY, K, 2**32 - 1)) == "p-1"
    assert resolver.resolve(compute_eid(KEY, K, 0)) == "p-1"  # the next period, after the wrap
    assert resolver.next_rollover() == NOW + 1


def test_rollover_moves_the_window(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    resolver.add_key(key)
    boundary = (int(NOW) // PERIOD + 1) * PERIOD
    assert resolver.next_rollover() == boundary
    assert resolver.refresh() == 0  # nothing due: no work
    clock.advance(boundary - 1 - NOW)
    assert resolver.refresh() == 0
    assert resolver.resolve(eid_at(key, NOW, 2)) is None

    clock.advance(1)  # exactly on the boundary: the phone sends the next period's EID now
    assert resolver.refresh() == 1
    assert resolver.refresh() == 0
    assert resolver.resolve(eid_at(key, NOW, 1)) == "p-1"  # the new current period
    assert resolver.resolve(eid_at(key, NOW, 2)) == "p-1"  # its next one
    assert resolver.resolve(eid_at(key, NOW, -1)) is None  # two periods back now
    assert resolver.stats().table == 3
    assert resolver.stats().refreshes == 1
    assert resolver.next_rollover() == boundary + PERIOD


def test_a_long_pause_catches_up_in_one_refresh(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    resolver.add_key(key)
    clock.advance(10 * PERIOD)
    assert resolver.refresh() == 1
    assert resolver.resolve(eid_at(key, clock.wall())) == "p-1"
    assert resolver.stats().table == 3


def test_a_wall_clock_step_back_rebuilds(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    resolver.add_key(key)
    assert resolver.refresh() == 0
    earlier = NOW - 5 * PERIOD
    assert resolver.refresh(earlier) == 1
    assert resolver.resolve(eid_at(key, earlier)) == "p-1"
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.stats().table == 3


def test_refresh_moves_only_the_keys_that_rolled(clock: ManualClock) -> None:
    fast = EidKey("fast", bytes(16), 4)  # 16 s periods
    slow = EidKey("slow", bytes(range(1, 17)), 15)  # 9 h periods
    resolver = EidResolver(clock)
    resolver.load([fast, slow])
    moved = 0
    for _ in range(10):
        clock.advance(16)
        moved += resolver.refresh()
    assert moved == 10  # the fast key every time, the slow key never (NOW is not near its boundary)
    assert resolver.resolve(eid_at(fast, clock.wall())) == "fast"
    assert resolver.resolve(eid_at(slow, clock.wall())) == "slow"


def test_a_new_key_replaces_the_old_one(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    resolver.add_key(key)
    old = eid_at(key, NOW)
    new_key = EidKey("p-1", bytes(16), K)
    resolver.add_key(new_key)
    assert resolver.resolve(old) is None
    assert resolver.resolve(eid_at(new_key, NOW)) == "p-1"
    assert resolver.stats().table == 3


def test_remove_and_load(clock: ManualClock, key: EidKey) -> None:
    resolver = EidResolver(clock)
    other = EidKey("p-2", bytes(16), 12)
    assert resolver.load([key, other]) == 2
    assert resolver.remove_shopper("p-1")
    assert not resolver.remove_shopper("p-1")
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.resolve(eid_at(other, NOW)) == "p-2"
    assert resolver.load([key]) == 1  # a reload replaces the whole set
    assert resolver.resolve(eid_at(other, NOW)) is None
    assert resolver.stats().keys == 1
    assert resolver.stats().table == 3


def test_ten_thousand_keys(clock: ManualClock) -> None:
    many = [EidKey(f"p-{i}", i.to_bytes(16, "big"), 10 + i % 6, clock_offset_s=i) for i in range(10_000)]
    resolver = EidResolver(clock)
    assert resolver.load(many) == 10_000
    assert resolver.stats().table == 30_000
    for i in (0, 4_321, 9_999):
        assert resolver.resolve(eid_at(many[i], NOW)) == f"p-{i}"
    clock.advance(2**15)  # every key's period rolled at least once
    assert resolver.refresh() == 10_000
    assert resolver.resolve(eid_at(many[4_321], clock.wall())) == "p-4321"
    assert resolver.stats().table == 30_000


# ----- consent -----
@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def consents(sink: MemorySink, clock: ManualClock) -> ConsentStore:
    return ConsentStore(sink, clock)


async def test_only_opted_in_keys_resolve(clock: ManualClock, key: EidKey, consents: ConsentStore) -> None:
    resolver = EidResolver(clock, consents=consents)
    assert not resolver.add_key(key)  # held, not active
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.stats().table == 0
    await consents.apply("p-1", Purpose.MEASUREMENT, True, NOW, "app")  # another purpose: no effect
    assert resolver.resolve(eid_at(key, NOW)) is None
    await consents.apply("p-1", BLE, True, NOW, "app")
    assert resolver.resolve(eid_at(key, NOW)) == "p-1"


async def test_a_withdrawal_removes_the_eids_at_once(
    clock: ManualClock, key: EidKey, consents: ConsentStore, sink: MemorySink
) -> None:
    await consents.apply("p-1", BLE, True, NOW - 10, "app")
    resolver = EidResolver(clock, consents=consents)
    assert resolver.add_key(key)
    eid = eid_at(key, NOW)
    seen_by_next_listener: list[str | None] = []
    consents.subscribe(lambda shopper, purpose, granted: seen_by_next_listener.append(resolver.resolve(eid)))
    # Hold the durable write: the withdrawal must count before the ledger has it.
    sink.gate = asyncio.Event()
    withdrawal = asyncio.create_task(consents.apply("p-1", BLE, False, NOW, "kiosk"))
    await asyncio.sleep(0)
    assert not withdrawal.done()
    assert seen_by_next_listener == [None]  # already gone when the next listener ran
    assert resolver.resolve(eid) is None
    assert resolver.stats().table == 0
    assert resolver.stats().keys == 1  # kept, inactive
    sink.gate.set()
    await withdrawal


async def test_a_grant_after_a_withdrawal_restores(
    clock: ManualClock, key: EidKey, consents: ConsentStore
) -> None:
    await consents.apply("p-1", BLE, True, NOW - 10, "app")
    resolver = EidResolver(clock, consents=consents)
    resolver.add_key(key)
    await consents.apply("p-1", BLE, False, NOW - 5, "kiosk")
    clock.advance(3 * PERIOD)  # periods rolled meanwhile: the restored window is today's
    assert resolver.refresh() == 0  # an inactive key costs nothing
    await consents.apply("p-1", BLE, True, clock.wall(), "app")
    assert resolver.resolve(eid_at(key, clock.wall())) == "p-1"
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.stats().table == 3


async def test_a_removed_key_is_not_restored_by_a_grant(
    clock: ManualClock, key: EidKey, consents: ConsentStore
) -> None:
    await consents.apply("p-1", BLE, True, NOW - 10, "app")
    resolver = EidResolver(clock, consents=consents)
    resolver.add_key(key)
    resolver.remove_shopper("p-1")
    await consents.apply("p-1", BLE, False, NOW - 5, "kiosk")
    await consents.apply("p-1", BLE, True, NOW, "app")
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.stats().keys == 0


async def test_close_stops_listening(clock: ManualClock, key: EidKey, consents: ConsentStore) -> None:
    resolver = EidResolver(clock, consents=consents)
    resolver.add_key(key)
    resolver.close()
    await consents.apply("p-1", BLE, True, NOW, "app")
    assert resolver.stats().active == 0


class SilentConsents:
    """A consent source that never notifies: resolution must still check consent on a hit."""

    def __init__(self) -> None:
        self.granted: set[str] = set()

    def has(self, shopper_id: str, purpose: Purpose) -> bool:
        return purpose is BLE and shopper_id in self.granted

    def subscribe(self, callback: Callable[[str, Purpose, bool], None]) -> Callable[[], None]:
        return lambda: None


def test_consent_is_checked_on_every_hit(clock: ManualClock, key: EidKey) -> None:
    consents = SilentConsents()
    consents.granted.add("p-1")
    resolver = EidResolver(clock, consents=consents)
    resolver.add_key(key)
    assert resolver.resolve(eid_at(key, NOW)) == "p-1"
    consents.granted.clear()
    assert resolver.resolve(eid_at(key, NOW)) is None
    assert resolver.stats().table == 0


# ----- the keys file -----
def entry(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "shopper_id": "p-1",
        "identity_key": KEY.hex(),
        "rotation_exponent": K,
        "clock_offset_s": 0,
    }
    item.update(overrides)
    return {name: value for name, value in item.items() if value is not None}


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "eid-keys.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def test_load_a_keys_file(tmp_path: Path, clock: ManualClock) -> None:
    secret = bytes(range(100, 116))
    path = write(
        tmp_path,
        {"keys": [entry(), entry(shopper_id="p-2", identity_key=secret.hex().upper(), clock_offset_s=-5)]},
    )
    loaded = load_eid_keys(path)
    assert loaded == [EidKey("p-1", KEY, K, 0), EidKey("p-2", secret, K, -5)]
    resolver = EidResolver(clock)
    resolver.load(loaded)
    assert resolver.resolve(eid_at(loaded[1], NOW)) == "p-2"


def test_an_empty_keys_file_is_valid(tmp_path: Path) -> None:
    assert load_eid_keys(write(tmp_path, {"keys": []})) == []


SECRET_HEX = "f00dfeedf00dfeedf00dfeedf00dfee"  # 31 characters: invalid, and must not be echoed


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], 'a "keys" list'),
        ({"keys": {}}, 'a "keys" list'),
        ({"keys": [], "extra": 1}, "unknown field 'extra'"),
        ({"keys": [entry(), "p-2"]}, "keys[1]: expected an object"),
        ({"keys": [entry(), entry(shopper_id=None)]}, "keys[1].shopper_id: missing"),
        ({"keys": [entry(rotation_exponent=None)]}, "keys[0].rotation_exponent: missing"),
        ({"keys": [entry(clock_offset_s=None)]}, "keys[0].clock_offset_s: missing"),
        ({"keys": [entry(label="phone")]}, "keys[0].label: unknown field"),
        ({"keys": [entry(shopper_id="")]}, "keys[0].shopper_id"),
        ({"keys": [entry(shopper_id=7)]}, "keys[0].shopper_id"),
        ({"keys": [entry(shopper_id="x" * 129)]}, "keys[0].shopper_id"),
        ({"keys": [entry(), entry()]}, "keys[1].shopper_id: p-1 is already at keys[0]"),
        ({"keys": [entry(identity_key=SECRET_HEX)]}, "keys[0].identity_key: expected 32 hex"),
        ({"keys": [entry(identity_key=SECRET_HEX + "g")]}, "keys[0].identity_key"),
        ({"keys": [entry(identity_key=" " + SECRET_HEX)]}, "keys[0].identity_key"),
        ({"keys": [entry(identity_key=list(KEY))]}, "keys[0].identity_key"),
        ({"keys": [entry(rotation_exponent=16)]}, "keys[0].rotation_exponent"),
        ({"keys": [entry(rotation_exponent=-1)]}, "keys[0].rotation_exponent"),
        ({"keys": [entry(rotation_exponent=True)]}, "keys[0].rotation_exponent"),
        ({"keys": [entry(rotation_exponent=10.0)]}, "keys[0].rotation_exponent"),
        ({"keys": [entry(clock_offset_s=1.5)]}, "keys[0].clock_offset_s"),
        ({"keys": [entry(clock_offset_s=2**32)]}, "keys[0].clock_offset_s"),
        ({"keys": [entry(clock_offset_s=False)]}, "keys[0].clock_offset_s"),
    ],
)
def test_keys_file_errors_name_the_entry_and_field(tmp_path: Path, document: Any, where: str) -> None:
    path = write(tmp_path, document)
    with pytest.raises(EidKeyFileError) as caught:
        load_eid_keys(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert where in message
    assert SECRET_HEX not in message
    assert KEY.hex() not in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"keys": [', "not valid JSON"),
        (b'{"keys": ["\xff"]}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_unreadable_keys_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "eid-keys.json"
    path.write_bytes(content)
    with pytest.raises(EidKeyFileError, match=problem):
        load_eid_keys(path)


def test_a_json_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = tmp_path / "eid-keys.json"
    path.write_text('{"keys": [{"identity_key": "' + KEY.hex() + '" "oops"}]}')
    with pytest.raises(EidKeyFileError) as caught:
        load_eid_keys(path)
    assert KEY.hex() not in str(caught.value)


def test_a_missing_keys_file(tmp_path: Path) -> None:
    with pytest.raises(EidKeyFileError, match="cannot read"):
        load_eid_keys(tmp_path / "absent.json")


def test_a_readable_keys_file_is_warned_about_without_its_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, {"keys": [entry()]})
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="edge.identity.eid"):
        load_eid_keys(path)
    assert "other users may read it" in caplog.text
    assert KEY.hex() not in caplog.text


def test_parse_eid_keys_names_its_origin() -> None:
    with pytest.raises(EidKeyFileError, match=r"^cloud push: keys\[0\]\.rotation_exponent"):
        parse_eid_keys({"keys": [entry(rotation_exponent=99)]}, "cloud push")


def test_removing_many_keys_keeps_the_rest_rolling(clock: ManualClock) -> None:
    many = [EidKey(f"p-{i}", i.to_bytes(16, "big"), 4) for i in range(200)]
    resolver = EidResolver(clock)
    resolver.load(many)
    for i in range(190):  # enough stale heap entries to compact them away
        resolver.remove_shopper(f"p-{i}")
    stats = resolver.stats()
    assert (stats.keys, stats.active, stats.table) == (10, 10, 30)
    clock.advance(16)
    assert resolver.refresh() == 10
    assert resolver.next_rollover() == (int(clock.wall()) // 16 + 1) * 16
    assert resolver.resolve(eid_at(many[195], clock.wall())) == "p-195"
