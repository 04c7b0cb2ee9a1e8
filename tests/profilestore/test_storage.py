"""The storage on SQLite and on PostgreSQL: the same behaviour, through the public Storage interface."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from profilestore.const import PAGE_BUDGET_BYTES
from profilestore.storage import (
    EidKeyState,
    EventRecord,
    Storage,
    StorageUnavailableError,
    TokenInUseError,
    open_storage,
)

US = 1_000_000
T0 = 1_800_000_000 * US


def event(
    event_id: str, *, shopper: str | None = "p1", at_us: int = T0, kind: str = "exposure"
) -> EventRecord:
    return EventRecord(event_id, kind, "conversion", at_us, shopper, {"n": 1})


def uid(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


async def all_changes(storage: Storage) -> list[tuple[int, str, str, str]]:
    page = await storage.changes(0, 1000, PAGE_BUDGET_BYTES, store_id=None)
    return [(change.seq, change.kind, change.id, change.op) for change in page.changes]


async def test_schema_is_created_once_and_the_instance_survives_reopening(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        first = storage.instance
        await storage.put_profile("p1", {"visits": 1}, T0)
    async with open_storage(db_url) as storage:
        assert storage.instance == first
        assert (await storage.stats())["profiles"] == 1
        await storage.ping()


async def test_changes_come_in_seq_order_and_pages_continue(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        for number in range(7):
            await storage.put_offer(f"o{number}", {"id": f"o{number}"}, T0 + number)
        first = await storage.changes(0, 3, PAGE_BUDGET_BYTES, store_id=None)
        assert [change.id for change in first.changes] == ["o0", "o1", "o2"]
        assert first.more
        second = await storage.changes(first.changes[-1].seq, 3, PAGE_BUDGET_BYTES, store_id=None)
        third = await storage.changes(second.changes[-1].seq, 3, PAGE_BUDGET_BYTES, store_id=None)
        assert [change.id for change in second.changes + third.changes] == ["o3", "o4", "o5", "o6"]
        assert not third.more
        assert third.last_seq == 7
        seqs = [change.seq for change in first.changes + second.changes + third.changes]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 7


async def test_a_page_stops_at_its_byte_budget_but_holds_one_change(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        for number in range(3):
            await storage.put_offer(f"o{number}", {"id": f"o{number}", "data": "x" * 1000}, T0)
        page = await storage.changes(0, 10, budget_bytes=1500, store_id=None)
        assert len(page.changes) == 1
        assert page.more
        tiny = await storage.changes(0, 10, budget_bytes=1, store_id=None)
        assert len(tiny.changes) == 1


async def test_the_log_keeps_only_the_latest_change_of_each_key(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_offer("o1", {"id": "o1", "v": 1}, T0)
        await storage.put_inventory("o1", True, 3, T0)
        await storage.put_offer("o1", {"id": "o1", "v": 2}, T0)
        await storage.delete_inventory("o1", T0)
        assert await all_changes(storage) == [(3, "offer", "o1", "upsert"), (4, "inventory", "o1", "delete")]
        page = await storage.changes(0, 10, PAGE_BUDGET_BYTES, store_id=None)
        assert page.changes[0].data == {"id": "o1", "v": 2}
        assert page.changes[1].data == {}


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ((True, T0, "app"), (False, T0 + 1, "app"), (False, T0 + 1)),  # later wins
        ((False, T0 + 1, "app"), (True, T0, "app"), (False, T0 + 1)),  # an older grant changes nothing
        ((True, T0, "app"), (False, T0, "app"), (False, T0)),  # a tie: the withdrawal wins
        ((False, T0, "app"), (True, T0, "app"), (False, T0)),  # ...in either order
        ((True, T0, "app"), (True, T0, "zzz"), (True, T0)),  # a tie between grants: the larger source
    ],
)
async def test_consent_latest_wins_and_a_withdrawal_wins_a_tie(
    db_url: str, first: tuple[bool, int, str], second: tuple[bool, int, str], winner: tuple[bool, int]
) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_store("s1", b"a" * 32, T0)
        await storage.put_profile("p1", {}, T0, home_store="s1")  # s1 holds p1: consents are written for it
        one = await storage.put_consent("p1", "personalization", first[0], first[1], first[2], T0)
        assert one.applied
        two = await storage.put_consent("p1", "personalization", second[0], second[1], second[2], T0)
        state = (await storage.shopper("p1")).consents["personalization"]  # type: ignore[union-attr]
        assert (state.granted, state.at_us) == winner
        assert two.applied == ((second[0], second[1]) == winner and second != first)
        changes = [change for change in await all_changes(storage) if change[1] == "consent"]
        assert len(changes) == 1  # one purpose of one shopper: one entry in the store's log
        assert changes[0][0] == (two.seq if two.applied else one.seq)


async def test_an_identical_consent_is_not_applied_twice(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        assert (await storage.put_consent("p1", "measurement", True, T0, "app", T0)).applied
        again = await storage.put_consent("p1", "measurement", True, T0, "app", T0)
        assert not again.applied
        assert again.seq is None
        assert again.current is not None
        assert again.current.granted


async def test_erasure_removes_state_history_and_ids_and_keeps_a_tombstone(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.put_store("s1", b"h" * 32, T0)
        await storage.put_profile("p1", {"visits": 3}, T0)
        await storage.put_consent("p1", "personalization", True, T0, "app", T0)
        await storage.put_consent("p1", "measurement", True, T0, "app", T0)
        await storage.put_eid_key("p1", EidKeyState(bytes(16), 10, 0), T0)
        await storage.put_profile("p2", {"visits": 1}, T0)
        await storage.push_events("s1", [event(uid(1)), event(uid(2), shopper="p2")], T0)

        outcome = await storage.erase_shopper("p1", T0 + US)

        assert (outcome.profile, outcome.consents, outcome.eid_key, outcome.events) == (True, 2, True, 1)
        assert await storage.shopper("p1") is None
        assert await storage.shopper("p2") is not None
        changes = await all_changes(storage)
        assert [change for change in changes if change[2] == "p1"] == [
            (outcome.seq, "erasure", "p1", "upsert")
        ]
        assert (await storage.changes(0, 10, PAGE_BUDGET_BYTES, store_id=None)).changes[-1].at_us == T0 + US
        stored = (await storage.events(None, 0, 10, PAGE_BUDGET_BYTES)).events
        assert [item.event.shopper_id for item in stored] == [None, "p2"]
        stats = await storage.stats()
        assert stats["erasures"] == 1
        assert stats["profiles"] == 1
        # A consent from before the erasure belongs to the erased shopper; a later one is new.
        late = await storage.put_consent("p1", "personalization", True, T0 + US - 1, "app", T0 + 2 * US)
        assert not late.applied
        assert (
            await storage.put_consent("p1", "personalization", True, T0 + 2 * US, "app", T0 + 2 * US)
        ).applied
        # An event pushed from a backlog after the erasure, dated before it, is stored without the id.
        await storage.push_events(
            "s1", [event(uid(3), at_us=T0), event(uid(4), at_us=T0 + 3 * US)], T0 + 3 * US
        )
        stored = (await storage.events(None, 2, 10, PAGE_BUDGET_BYTES)).events
        assert [item.event.shopper_id for item in stored] == [None, "p1"]


async def test_an_erasure_of_an_unknown_shopper_still_reaches_the_gateways(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        outcome = await storage.erase_shopper("seeded-only", T0)
        assert (outcome.profile, outcome.consents, outcome.eid_key, outcome.events) == (False, 0, False, 0)
        assert await all_changes(storage) == [(1, "erasure", "seeded-only", "upsert")]


async def test_pushes_are_idempotent_by_id(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        batch = [event(uid(number)) for number in range(5)]
        first = await storage.push_events("s1", batch, T0)
        again = await storage.push_events("s1", batch, T0 + 1)
        assert (first.accepted, first.duplicates, first.foreign) == (5, 0, [])
        assert (again.accepted, again.duplicates, again.foreign) == (0, 5, [])
        twice_in_one = await storage.push_events("s1", [event(uid(9)), event(uid(9))], T0)
        assert (twice_in_one.accepted, twice_in_one.duplicates) == (1, 1)
        assert (await storage.stats())["events"] == 6


async def test_an_id_used_by_another_store_is_not_a_duplicate(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.push_events("s1", [event(uid(1))], T0)
        outcome = await storage.push_events("s2", [event(uid(2)), event(uid(1))], T0)
        assert (outcome.accepted, outcome.duplicates, outcome.foreign) == (1, 0, [1])
        assert (await storage.stats())["events_by_store"] == {"s1": 1, "s2": 1}


async def test_events_page_in_receive_order_per_store(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await storage.push_events("s1", [event(uid(1)), event(uid(2))], T0)
        await storage.push_events("s2", [event(uid(3))], T0)
        await storage.push_events("s1", [event(uid(4))], T0)
        everything = await storage.events(None, 0, 10, PAGE_BUDGET_BYTES)
        assert [item.event.id for item in everything.events] == [uid(1), uid(2), uid(3), uid(4)]
        mine = await storage.events("s1", 0, 2, PAGE_BUDGET_BYTES)
        assert [item.event.id for item in mine.events] == [uid(1), uid(2)]
        assert mine.more
        rest = await storage.events("s1", mine.events[-1].recv_seq, 2, PAGE_BUDGET_BYTES)
        assert [item.event.id for item in rest.events] == [uid(4)]
        assert not rest.more


async def test_a_token_belongs_to_one_store(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        assert await storage.put_store("s1", b"a" * 32, T0)
        assert not await storage.put_store("s1", b"b" * 32, T0)  # rotated
        assert await storage.store_token("s1") == b"b" * 32
        assert await storage.store_of_token(b"b" * 32) == "s1"
        assert await storage.store_of_token(b"a" * 32) is None
        with pytest.raises(TokenInUseError):
            await storage.put_store("s2", b"b" * 32, T0)


async def test_concurrent_writers_get_distinct_increasing_seqs(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        seqs = await asyncio.gather(*(storage.put_offer(f"o{n}", {"id": f"o{n}"}, T0) for n in range(40)))
        assert sorted(seqs) == list(range(1, 41))
        page = await storage.changes(0, 100, PAGE_BUDGET_BYTES, store_id=None)
        assert [change.seq for change in page.changes] == list(range(1, 41))


async def test_servers_starting_together_migrate_once(db_url: str) -> None:
    async with open_storage(db_url) as one, open_storage(db_url) as two:
        assert one.instance == two.instance
        await one.put_profile("p1", {}, T0)
        assert (await two.stats())["profiles"] == 1


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageUnavailableError):
        async with open_storage(str(tmp_path / "junk.db")):
            pass
