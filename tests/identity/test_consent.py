import asyncio
import json

import pytest

from edge.clock import ManualClock
from edge.events import Purpose
from edge.identity import ConsentFileError, ConsentStore, ProfileCache
from edge.ledger import Ledger

P = Purpose.PERSONALIZATION
M = Purpose.MEASUREMENT


@pytest.fixture
async def ledger(tmp_path):
    async with Ledger(tmp_path / "ledger.sqlite", ManualClock()) as led:
        yield led


async def test_latest_wins_and_withdrawal_wins_a_tie(ledger) -> None:
    store = ConsentStore(ledger, ManualClock())
    assert await store.apply("s", P, True, 100.0, "app")
    assert store.has("s", P)
    assert not await store.apply("s", P, False, 99.0, "app")  # older: ignored
    assert store.has("s", P)
    assert await store.apply("s", P, False, 100.0, "kiosk")  # tie: withdrawal wins
    assert not store.has("s", P)
    assert not await store.apply("s", P, True, 100.0, "app")  # tie: a grant does not undo it
    assert await store.apply("s", P, True, 101.0, "app")
    assert store.granted("s") == frozenset({P})


async def test_listeners_and_persistence(ledger, tmp_path) -> None:
    store = ConsentStore(ledger, ManualClock())
    seen = []
    unsubscribe = store.subscribe(lambda *change: seen.append(change))
    await store.apply("s", M, True, 1.0, "app")
    await store.apply("s", M, True, 2.0, "app")  # newer but same value: no change event
    await store.apply("s", M, False, 3.0, "app")
    unsubscribe()
    await store.apply("s", M, True, 4.0, "app")
    assert seen == [("s", M, True), ("s", M, False)]
    reloaded = ConsentStore(ledger, ManualClock())
    assert await reloaded.load() == 1
    assert reloaded.has("s", M)


async def test_withdrawal_is_visible_before_the_write_returns(ledger) -> None:
    store = ConsentStore(ledger, ManualClock())
    await store.apply("s", P, True, 1.0, "app")
    pending = store.apply("s", P, False, 2.0, "app")
    task = asyncio.ensure_future(pending)
    await asyncio.sleep(0)  # the coroutine has started, its write is queued
    assert not store.has("s", P)
    await task


async def test_seed_file(ledger, tmp_path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(
        json.dumps(
            {
                "shoppers": [
                    {
                        "id": "a",
                        "at": "2026-11-01T10:00:00Z",
                        "consents": {"personalization": True},
                        "profile": {"visits": 3},
                    },
                    {"id": "b", "consents": {"measurement": False}},
                ]
            }
        )
    )
    store, profiles = ConsentStore(ledger, ManualClock()), ProfileCache()
    assert await store.seed_from_file(path, profiles) == 2
    assert store.has("a", P)
    assert profiles.get("a") == {"visits": 3}
    assert profiles.get("b") is None
    # a newer local withdrawal is not undone by seeding again
    await store.apply("a", P, False, 1_900_000_000.0, "app")
    await store.seed_from_file(path, profiles)
    assert not store.has("a", P)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"shoppers": [{"id": "a", "consents": {"telepathy": True}}]},
            "shoppers.0.consents.telepathy: unknown purpose",
        ),
        (
            {"shoppers": [{"id": "a", "consents": {"measurement": "yes"}}]},
            "shoppers.0.consents.measurement: expected true",
        ),
        ({"shoppers": [{"consents": {}}]}, "shoppers.0.id"),
        ({"shoppers": [{"id": "a", "at": "never"}]}, "shoppers.0.at"),
        ({"people": []}, "'shoppers' list"),
    ],
)
async def test_seed_file_errors(ledger, tmp_path, body, message) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConsentFileError, match=message):
        await ConsentStore(ledger, ManualClock()).seed_from_file(path, ProfileCache())
