"""Two server replicas on one PostgreSQL: writes through both while a gateway pulls through both."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import asyncpg

from profilestore.postgres import LOCK_KEYS
from profilestore.sqldb import Lane
from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.wait import until

WRITERS = 6
WRITES_EACH = 20
PAGE = 7


async def _write(kits: list[ProfileStoreKit], writer: int) -> list[tuple[int, str]]:
    written = []
    for number in range(WRITES_EACH):
        kit = kits[(writer + number) % len(kits)]
        offer_id = f"w{writer}-{number}"
        answer = await kit.put_inventory(offer_id, True, number)
        written.append((int(answer["seq"]), offer_id))
    return written


async def test_no_change_is_skipped_across_replicas(tmp_path: Path, pg_url: str) -> None:
    async with (
        running_profile_store(tmp_path / "a", db_url=pg_url, admin_token="shared-admin-token") as one,
        running_profile_store(tmp_path / "b", db_url=pg_url, admin_token="shared-admin-token") as two,
    ):
        kits = [one, two]
        assert one.base_url != two.base_url
        token = await one.add_store("s1")
        writers = asyncio.gather(*(_write(kits, writer) for writer in range(WRITERS)))
        seen: list[tuple[int, str]] = []
        cursor = ""
        cursors = []
        for kit in itertools.cycle(kits):  # the gateway's pulls alternate between the replicas
            done = writers.done()
            status, page = await kit.store_call(
                "GET", f"/v1/stores/s1/changes?since={cursor}&limit={PAGE}", token
            )
            assert status == 200, page
            seen += [(change["seq"], change["id"]) for change in page["changes"]]
            cursor = page["cursor"]
            cursors.append(cursor)
            if done and not page["more"] and not page["changes"]:
                break
            if not page["changes"]:
                await asyncio.sleep(0.005)
        written = list(itertools.chain.from_iterable(await writers))

        assert len(written) == WRITERS * WRITES_EACH
        # Every change written through either replica was pulled exactly once, in seq order.
        assert sorted(written) == seen
        assert [seq for seq, _ in seen] == sorted({seq for seq, _ in seen})
        numbers = [int(item.split(".")[1]) for item in cursors]
        assert numbers == sorted(numbers)
        assert len({item.split(".")[0] for item in cursors}) == 1  # one database, one cursor space


LOCK_WAITERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def test_a_change_writer_waits_for_the_change_lock(tmp_path: Path, pg_url: str) -> None:
    async with running_profile_store(tmp_path, db_url=pg_url) as kit:
        await kit.put_inventory("first", True)
        holder = await asyncpg.connect(pg_url)
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEYS[Lane.CHANGES])
            write = asyncio.ensure_future(kit.put_inventory("second", True))

            async def waiting_for_the_lock() -> bool:
                # this run's database only: other runs may share the server
                return bool(await holder.fetchval(LOCK_WAITERS))

            await until(waiting_for_the_lock)
            assert not write.done()  # another replica's transaction holds the lock: this one waits
            await transaction.commit()
            assert (await asyncio.wait_for(write, 5))["seq"] == 2
        finally:
            await holder.close()
