"""Consent: latest wins, a withdrawal wins a tie and counts at once, listeners, the seed file, profiles."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock, parse_iso_utc
from edge.events import Purpose
from edge.identity import ConsentFileError, ConsentRecord, ConsentStore, ProfileCache, parse_seed
from edge.identity.consent import PROFILE_FIELDS
from edge.ledger import ConsentRow, Ledger
from tests.identity.conftest import MemorySink, rank

P = Purpose.PERSONALIZATION
M = Purpose.MEASUREMENT
NOW = 1_800_000_000.0


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def store(sink: MemorySink) -> ConsentStore:
    return ConsentStore(sink, ManualClock(wall=NOW))


async def test_latest_wins(store: ConsentStore, sink: MemorySink) -> None:
    assert await store.apply("s", P, True, 100.0, "app")
    assert store.has("s", P)
    assert not await store.apply("s", P, False, 99.0, "cloud")  # older: ignored, not written
    assert store.has("s", P)
    assert await store.apply("s", P, False, 101.0, "kiosk")
    assert not store.has("s", P)
    assert await store.apply("s", P, True, 102.0, "app")
    assert store.granted("s") == frozenset({P})
    assert [(row.granted, row.at_wall) for row in sink.writes] == [
        (True, 100.0),
        (False, 101.0),
        (True, 102.0),
    ]


@pytest.mark.parametrize("first_granted", [True, False])
async def test_a_withdrawal_wins_a_tie_in_either_order(store: ConsentStore, first_granted: bool) -> None:
    await store.apply("s", P, first_granted, 100.0, "app")
    await store.apply("s", P, not first_granted, 100.0, "app")
    assert not store.has("s", P)


async def test_a_newer_grant_of_a_granted_purpose_is_stored_but_is_no_change(
    store: ConsentStore, sink: MemorySink
) -> None:
    assert await store.apply("s", M, True, 1.0, "app")
    assert not await store.apply("s", M, True, 2.0, "app")
    assert sink.rows[("s", M)].at_wall == 2.0
    # A first withdrawal changes nothing a stage could see, but is stored so an older grant cannot win later.
    assert not await store.apply("t", M, False, 5.0, "app")
    assert not await store.apply("t", M, True, 4.0, "cloud")
    assert not store.has("t", M)


async def test_purposes_and_shoppers_are_independent(store: ConsentStore) -> None:
    await store.apply("s", P, True, 1.0, "app")
    await store.apply("s", M, True, 1.0, "app")
    await store.apply("t", M, True, 1.0, "app")
    await store.apply("s", M, False, 2.0, "app")
    assert store.granted("s") == frozenset({P})
    assert store.granted("t") == frozenset({M})
    assert store.granted("unknown") == frozenset()
    assert not store.has("unknown", P)


async def test_a_withdrawal_counts_before_its_write_returns(store: ConsentStore, sink: MemorySink) -> None:
    await store.apply("s", P, True, 1.0, "app")
    seen: list[tuple[str, Purpose, bool]] = []
    store.subscribe(lambda *change: seen.append(change))
    sink.gate = asyncio.Event()
    task = asyncio.create_task(store.apply("s", P, False, 2.0, "app"))
    await asyncio.sleep(0)
    assert not store.has("s", P)
    assert seen == [("s", P, False)]
    assert not task.done()  # not durable yet, so not acknowledged yet
    assert sink.rows[("s", P)].granted
    sink.gate.set()
    assert await task is True
    assert not sink.rows[("s", P)].granted


async def test_a_grant_counts_only_once_durable(store: ConsentStore, sink: MemorySink) -> None:
    seen: list[tuple[str, Purpose, bool]] = []
    store.subscribe(lambda *change: seen.append(change))
    sink.gate = asyncio.Event()
    task = asyncio.create_task(store.apply("s", P, True, 1.0, "app"))
    await asyncio.sleep(0)
    assert not store.has("s", P)
    assert seen == []
    sink.gate.set()
    assert await task is True
    assert store.has("s", P)
    assert seen == [("s", P, True)]


async def test_a_withdrawal_during_a_pending_grant_keeps_winning(
    store: ConsentStore, sink: MemorySink
) -> None:
    sink.gate = asyncio.Event()
    grant = asyncio.create_task(store.apply("s", P, True, 1.0, "app"))
    withdrawal = asyncio.create_task(store.apply("s", P, False, 2.0, "app"))
    await asyncio.sleep(0)
    sink.gate.set()
    assert await grant is False
    assert await withdrawal is False  # nothing was granted in memory yet
    assert not store.has("s", P)
    assert not sink.rows[("s", P)].granted


async def test_a_failed_grant_changes_nothing(store: ConsentStore, sink: MemorySink) -> None:
    sink.fail = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await store.apply("s", P, True, 1.0, "app")
    assert not store.has("s", P)
    assert await store.apply("s", P, True, 1.0, "app")  # the resend
    assert store.has("s", P)


async def test_a_failed_withdrawal_stays_in_effect_and_a_resend_writes_it(
    store: ConsentStore, sink: MemorySink
) -> None:
    await store.apply("s", P, True, 1.0, "app")
    sink.fail = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await store.apply("s", P, False, 2.0, "app")
    assert not store.has("s", P)  # still withdrawn: the safe side
    assert store.stats()["unsynced"] == 1
    assert sink.rows[("s", P)].granted
    assert await store.apply("s", P, False, 2.0, "app") is False  # no change to announce, but written
    assert not sink.rows[("s", P)].granted
    assert store.stats()["unsynced"] == 0
    assert await store.apply("s", P, False, 2.0, "app") is False
    assert len(sink.writes) == 2  # an ordinary duplicate is not written again


async def test_an_unsynced_withdrawal_outranked_by_a_newer_grant_is_not_resurrected(
    store: ConsentStore, sink: MemorySink
) -> None:
    sink.fail = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await store.apply("s", P, False, 1.0, "app")
    await store.apply("s", P, True, 2.0, "app")
    await store.apply("s", P, False, 1.0, "app")  # the late resend of the old withdrawal
    assert store.has("s", P)
    assert store.stats()["unsynced"] == 0


async def test_listeners_hear_every_change_until_unsubscribed(store: ConsentStore) -> None:
    seen: list[tuple[str, Purpose, bool]] = []
    unsubscribe = store.subscribe(lambda *change: seen.append(change))
    await store.apply("s", M, True, 1.0, "app")
    await store.apply("s", M, True, 2.0, "app")  # newer, same state: no event
    await store.apply("s", M, False, 1.5, "app")  # older: no event
    await store.apply("s", M, False, 3.0, "app")
    unsubscribe()
    unsubscribe()  # harmless twice
    await store.apply("s", M, True, 4.0, "app")
    assert seen == [("s", M, True), ("s", M, False)]


async def test_a_listener_may_unsubscribe_itself(store: ConsentStore) -> None:
    seen: list[bool] = []

    def once(shopper_id: str, purpose: Purpose, granted: bool) -> None:
        seen.append(granted)
        unsubscribe()

    unsubscribe = store.subscribe(once)
    store.subscribe(lambda *_: seen.append(True))
    await store.apply("s", M, True, 1.0, "app")
    await store.apply("s", M, False, 2.0, "app")
    assert seen == [True, True, True]


async def test_load_merges_the_sink_rows(sink: MemorySink) -> None:
    sink.rows[("s", P)] = ConsentRecord("s", P, True, 1.0, "app")
    sink.rows[("s", M)] = ConsentRecord("s", M, False, 1.0, "app")
    store = ConsentStore(sink, ManualClock(wall=NOW))
    assert await store.load() == 2
    assert store.granted("s") == frozenset({P})
    assert store.stats() == {"shoppers": 1, "records": 2, "unsynced": 0}


@pytest.mark.parametrize("at_wall", [math.nan, math.inf, -math.inf])
async def test_times_must_be_finite(store: ConsentStore, at_wall: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        await store.apply("s", P, False, at_wall, "app")


async def test_a_grant_dated_ahead_of_the_clock_is_refused(store: ConsentStore) -> None:
    with pytest.raises(ValueError, match="ahead"):
        await store.apply("s", P, True, NOW + 3600, "cloud")
    assert await store.apply("s", P, True, NOW + 60, "cloud")  # within clock skew
    # A withdrawal dated ahead only delays a later grant: allowed.
    await store.apply("s", P, False, NOW + 3600, "cloud")
    assert not store.has("s", P)


async def test_the_row_factory_makes_the_sink_rows(sink: MemorySink) -> None:
    store = ConsentStore(sink, ManualClock(wall=NOW), row_factory=ConsentRow)
    await store.apply("s", P, True, 1.0, "app")
    assert sink.writes == [ConsentRow("s", P, True, 1.0, "app")]


async def test_with_the_real_ledger(tmp_path: Path) -> None:
    clock = ManualClock(wall=NOW)
    async with Ledger(tmp_path / "ledger.sqlite", clock) as ledger:
        store = ConsentStore(ledger, clock)
        await store.apply("s", P, True, 1.0, "app")
        await store.apply("s", M, True, 1.0, "app")
        await store.apply("s", M, False, 2.0, "kiosk")
        reloaded = ConsentStore(ledger, clock)
        assert await reloaded.load() == 2
        assert reloaded.granted("s") == frozenset({P})


# ----- the rule as a property: memory agrees with the sink's order-independent maximum -----
_changes = st.lists(
    st.tuples(
        st.sampled_from(["s", "t"]),
        st.sampled_from([P, M]),
        st.booleans(),
        st.integers(min_value=0, max_value=4).map(float),
        st.sampled_from(["app", "kiosk"]),
    ),
    max_size=25,
)


@settings(max_examples=200)
@given(_changes)
def test_memory_matches_the_latest_wins_model_in_any_order(changes: list[tuple[Any, ...]]) -> None:
    expected: dict[tuple[str, Purpose], ConsentRecord] = {}
    for change in changes:
        record = ConsentRecord(*change)
        old = expected.get((record.shopper_id, record.purpose))
        if old is None or rank(record) > rank(old):
            expected[(record.shopper_id, record.purpose)] = record

    async def run() -> tuple[ConsentStore, MemorySink]:
        sink = MemorySink()
        store = ConsentStore(sink, ManualClock(wall=NOW))
        # Concurrently, as the seed and a cloud sync would: grants and withdrawals interleave at their awaits.
        await asyncio.gather(*(store.apply(*change) for change in changes))
        return store, sink

    store, sink = asyncio.run(run())
    for (shopper_id, purpose), record in expected.items():
        assert store.has(shopper_id, purpose) is record.granted
        assert sink.rows[(shopper_id, purpose)] == record


# ----- seed file -----
def seed_file(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "shoppers.json"
    path.write_text(json.dumps(document))
    return path


GOOD_SEED = {
    "shoppers": [
        {
            "id": "p-full",
            "at": "2026-11-01T10:00:00Z",
            "consents": {"personalization": True, "measurement": False},
            "profile": {"affinity": {"coffee": 0.9}},
        },
        {"id": "p-none", "at": "2026-11-01T10:00:00+01:00", "consents": {}},
    ]
}


async def test_seed_file(store: ConsentStore, sink: MemorySink, tmp_path: Path) -> None:
    profiles = ProfileCache()
    assert await store.seed_from_file(seed_file(tmp_path, GOOD_SEED), profiles) is profiles
    assert store.granted("p-full") == frozenset({P})
    assert store.granted("p-none") == frozenset()
    assert profiles.get("p-full") == {"affinity": {"coffee": 0.9}}
    assert profiles.get("p-none") is None
    at = parse_iso_utc("2026-11-01T10:00:00Z")
    assert set(sink.writes) == {
        ConsentRecord("p-full", P, True, at, "seed"),
        ConsentRecord("p-full", M, False, at, "seed"),
    }


async def test_seeding_again_does_not_undo_a_later_withdrawal(store: ConsentStore, tmp_path: Path) -> None:
    path = seed_file(tmp_path, GOOD_SEED)
    await store.seed_from_file(path)
    await store.apply("p-full", P, False, NOW, "app")
    profiles = await store.seed_from_file(path)  # the next start
    assert not store.has("p-full", P)
    assert "p-full" in profiles


def _shopper(**fields: Any) -> dict[str, Any]:
    shopper: dict[str, Any] = {"id": "p-1", "at": "2026-11-01T10:00:00Z", "consents": {"measurement": True}}
    shopper.update(fields)
    return {name: value for name, value in shopper.items() if value is not None}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"shoppers": [_shopper(), _shopper(id="p-2", consents={"telepathy": True})]},
            r"shoppers\[1\]\.consents\.telepathy: unknown purpose \(known: presence_ble, ",
        ),
        (
            {"shoppers": [_shopper(consents={"measurement": "yes"})]},
            r"shoppers\[0\]\.consents\.measurement: expected",
        ),
        ({"shoppers": [_shopper(consents=["measurement"])]}, r"shoppers\[0\]\.consents: expected an object"),
        ({"shoppers": [_shopper(consents=None)]}, r"shoppers\[0\]\.consents: expected an object"),
        ({"shoppers": [_shopper(id=None)]}, r"shoppers\[0\]\.id: expected a non-empty string"),
        ({"shoppers": [_shopper(id="")]}, r"shoppers\[0\]\.id"),
        ({"shoppers": [_shopper(), _shopper()]}, r"shoppers\[1\]\.id: p-1 is already at shoppers\[0\]"),
        ({"shoppers": [_shopper(at=None)]}, r"shoppers\[0\]\.at: expected an ISO-8601 time"),
        ({"shoppers": [_shopper(at="last tuesday")]}, r"shoppers\[0\]\.at: not an ISO-8601 time"),
        ({"shoppers": [_shopper(profile=[1])]}, r"shoppers\[0\]\.profile: expected an object"),
        ({"shoppers": ["p-1"]}, r"shoppers\[0\]: expected an object"),
        ({"people": []}, r'expected an object with a "shoppers" list'),
        ([], r'expected an object with a "shoppers" list'),
        (
            {"shoppers": [_shopper(at="2027-06-01T00:00:00Z")]},
            r"shoppers\[0\]\.at: 2027-06-01T00:00:00\.000Z is ahead of this gateway's clock",
        ),
    ],
)
async def test_seed_file_errors_name_the_shopper_and_key(
    store: ConsentStore, sink: MemorySink, tmp_path: Path, document: Any, message: str
) -> None:
    with pytest.raises(ConsentFileError, match=message) as caught:
        await store.seed_from_file(seed_file(tmp_path, document))
    assert "shoppers.json" in str(caught.value)
    assert sink.writes == []  # the whole file is checked before anything is applied


async def test_seed_file_that_is_missing_or_not_json(store: ConsentStore, tmp_path: Path) -> None:
    with pytest.raises(ConsentFileError, match=r"missing\.json: cannot read"):
        await store.seed_from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b"{\xff")
    with pytest.raises(ConsentFileError, match=r"bad\.json: not valid JSON"):
        await store.seed_from_file(tmp_path / "bad.json")


def test_parse_seed_is_pure() -> None:
    [shopper] = parse_seed({"shoppers": [_shopper(profile={"visits": 2})]}, "inline")
    assert shopper.shopper_id == "p-1"
    assert shopper.consents == {M: True}
    assert shopper.profile == {"visits": 2}


# ----- profiles -----
def test_profile_cache() -> None:
    profiles = ProfileCache(max_entries=2)
    profiles.put("a", {"visits": 1})
    profiles.put("b", {"visits": 2})
    assert profiles.get("a") == {"visits": 1}  # a is now the most recently used
    profiles.put("c", {"visits": 3})
    assert profiles.get("b") is None
    assert profiles.evicted == 1
    assert len(profiles) == 2
    assert profiles.forget("a")
    assert not profiles.forget("a")
    assert profiles.get("a") is None
    with pytest.raises(ValueError, match="positive"):
        ProfileCache(max_entries=0)


def test_the_profile_cache_keeps_only_what_the_gateway_reads() -> None:
    profiles = ProfileCache()
    profiles.put(
        "p-1",
        {
            "visits": 4,
            "affinity": {"coffee": 0.9},
            "staff_display_name": "Ana",
            "name": "Ana Example",
            "email": "ana@example.org",
            "segment": "regular",
            "notes": {"call_center": "prefers mornings"},
        },
    )
    assert profiles.get("p-1") == {"visits": 4, "affinity": {"coffee": 0.9}, "staff_display_name": "Ana"}
    assert {"device_preferences", "accessibility", "language", "sizes", "interests"} <= PROFILE_FIELDS
