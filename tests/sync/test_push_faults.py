"""The pusher behind a faulty proxy in front of the real reference store: nothing is ever lost.

Real parts: the reference store on a loopback port, a real aiohttp proxy in front of it (tests/support/
faultproxy.py), the real ledger file, the real client, pusher and retry loop. Only time is injected: the
retry loop's waits are recorded and move a manual clock instead of passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger
from edge.ledger.deadletter import read_refused
from edge.sync.client import CloudClient
from edge.sync.loop import RETRY_AFTER_MAX_S, RetryLoop
from edge.sync.push import PARK_RETRY_MAX_S, Pusher
from edge.sync.wire import EventClass
from tests.profilestore.conftest import pg_database, pg_url  # noqa: F401 - fixtures for PostgreSQL
from tests.support.faultproxy import FAULTS, FaultProxy
from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.wait import until

STORE = "s-proxy"
MIX = (
    EventClass.TELEMETRY,
    EventClass.TELEMETRY,
    EventClass.TELEMETRY,
    EventClass.CONVERSION,
    EventClass.PRIVACY,
)


@dataclass
class Rig:
    cloud: ProfileStoreKit
    proxy: FaultProxy
    ledger: Ledger
    clock: ManualClock
    pusher: Pusher
    loop: RetryLoop
    delays: list[float] = field(default_factory=list)
    queued: dict[str, EventClass] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(20261212))
    # Set while the retry loop waits between attempts; clearing ``released`` holds it there.
    between: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def enqueue(self, count: int, *, size: int = 40, kind: str = "presence") -> list[str]:
        ids = []
        for n in range(count):
            cls = MIX[len(self.queued) % len(MIX)]
            blob = self.rng.randbytes(size).hex()  # random: gzip cannot make the bodies small
            event_id = await self.ledger.outbox.enqueue(kind, cls, {"n": n, "blob": blob}, shopper_id="p-1")
            self.queued[event_id] = cls
            ids.append(event_id)
        self.loop.wake()
        return ids

    async def settled(self, timeout: float = 30.0) -> None:
        """Until every planned fault was met and nothing but parked events waits."""

        async def done() -> bool:
            return not self.proxy.planned and not await self.ledger.outbox.peek(1, 1 << 30)

        await until(done, timeout)

    async def received(self) -> list[str]:
        return [event["id"] for event in await self.cloud.events(STORE)]


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, *, batch_bytes: int = 64 * 1024, body_limit: int | None = None, db_url: str | None = None
) -> AsyncIterator[Rig]:
    clock = ManualClock()
    async with running_profile_store(tmp_path, db_url=db_url) as cloud:
        token = await cloud.add_store(STORE)
        proxy = FaultProxy(cloud.base_url, body_limit=body_limit)
        async with (
            proxy.running(),
            Ledger(tmp_path / "ledger.sqlite", clock) as ledger,
            CloudClient(proxy.url, STORE, token, timeout_s=5.0, clock=clock) as client,
        ):
            pusher = Pusher(
                ledger.outbox, ledger.dead_letters, client, clock, batch_events=40, batch_bytes=batch_bytes
            )
            delays: list[float] = []

            async def sleep(seconds: float) -> None:
                delays.append(seconds)
                clock.advance(seconds)
                between.set()  # the loop is between attempts: a test may change the path now
                await asyncio.sleep(0)
                await released.wait()
                between.clear()

            between, released = asyncio.Event(), asyncio.Event()
            released.set()

            # idle_s: an idle pusher waits to be woken (the test wakes it after queuing), never for time.
            loop = RetryLoop("push", idle_s=3600, retry_max_s=0.05, rng=random.Random(7), sleep=sleep)
            the_rig = Rig(
                cloud, proxy, ledger, clock, pusher, loop, delays, between=between, released=released
            )
            task = asyncio.create_task(loop.run(pusher.drain))
            try:
                yield the_rig
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The reference store's database: a SQLite file, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'profile-store.db'}"
    return str(request.getfixturevalue("pg_url"))


async def test_no_status_of_a_whole_request_loses_an_event(tmp_path: Path, store_db: str) -> None:
    figures: dict[str, tuple[int, int]] = {}
    async with rig(tmp_path, db_url=store_db) as r:
        await r.enqueue(40)
        await r.settled()
        for fault in FAULTS:
            times = {"http400_html": 6, "http413_html": 4}.get(fault, 2)
            if fault == "http429_date":
                r.proxy.retry_after_date = formatdate(r.clock.wall() + 120, usegmt=True)
            r.proxy.plan(fault, times)
            before = len(r.delays)
            ids = await r.enqueue(60)
            await r.settled()
            received = set(await r.received())
            figures[fault] = (len(ids), sum(1 for event_id in ids if event_id in received))
            if fault == "http429":
                assert 7.0 <= max(r.delays[before:]) <= 7.7  # Retry-After: 7 (seconds)
            if fault == "http429_date":
                assert 120.0 <= max(r.delays[before:]) <= 132.0  # Retry-After as an HTTP-date
        # A proxy asking for a day is honoured up to the cap.
        r.proxy.retry_after = "86400"
        r.proxy.plan("http429")
        before = len(r.delays)
        await r.enqueue(5)
        await r.settled()
        assert RETRY_AFTER_MAX_S <= max(r.delays[before:]) <= RETRY_AFTER_MAX_S * 1.1

        # Whatever a fault parked (an event sent alone when a fault ended) is delivered once it is due.
        r.clock.advance(PARK_RETRY_MAX_S)
        r.loop.wake()

        async def all_delivered() -> bool:
            return (await r.ledger.outbox.stats()).events == 0

        await until(all_delivered, 30)
        received = await r.received()
        hits = dict(r.proxy.hits)
        dead = await r.ledger.dead_letters.stats(r.clock.wall())

    # 0 lost, 0 duplicated (the store keeps each id once, the resends were counted as duplicates), in order
    # apart from what was parked, and nothing given up: no event was ever refused by name.
    assert len(received) == len(set(received)) == len(r.queued)
    assert set(received) == set(r.queued)
    assert dead.dead_letter.given_up == 0 and r.pusher.stats.given_up == 0
    for fault in FAULTS:
        assert hits.get(fault, 0) >= 1, f"{fault} never happened"
        assert figures[fault][0] == figures[fault][1], f"{fault}: {figures[fault]}"
    print(
        f"\nproxy faults ({store_db.split(':', maxsplit=1)[0]}): {len(r.queued)} queued, {len(received)} delivered once each, 0 dead-lettered; "
        f"answers {hits}; parked then delivered {r.pusher.stats.parked}; shrunk {r.pusher.stats.shrunk}; "
        f"resent as duplicates {r.pusher.stats.duplicates}"
    )


async def test_a_proxy_answering_400_to_every_push_costs_time_not_events(tmp_path: Path) -> None:
    """The issue's case: 2,000 queued events, privacy and conversions among them, behind a proxy that answers
    400 to every push. Before, all were split down to single events and deleted in seconds."""
    async with rig(tmp_path) as r:
        r.proxy.always = "http400_html"
        ids = await r.enqueue(2000, size=8)
        await until(lambda: _failed(r, 20), 60)
        # Everything still queued: nothing parked, nothing given up, and the loop backed off, loudly.
        outbox = await r.ledger.outbox.stats()
        assert outbox.events == 2000 and outbox.dropped == 0
        stats = await r.ledger.dead_letters.stats(r.clock.wall())
        assert stats.parked.events == 0 and stats.dead_letter.given_up == 0
        assert r.pusher.stats.given_up == 0 and r.proxy.hits["forwarded"] == 0
        # The proxy is fixed (between two attempts: mid-attempt, the event being told from the path would be
        # overtaken by the next one): every event arrives, once, in order.
        r.released.clear()
        await until(lambda: _between(r), 10)
        r.proxy.always = None
        r.released.set()
        await r.settled(timeout=60)
        received = await r.received()
        assert received == ids


async def _between(r: Rig) -> bool:
    return r.between.is_set()


async def _failed(r: Rig, times: int) -> bool:
    return r.loop.state.failures["http400"] >= times


async def test_a_lower_body_limit_shrinks_batches_and_an_event_over_it_is_parked_never_given_up(
    tmp_path: Path,
) -> None:
    limit = 8 * 1024
    async with rig(tmp_path, body_limit=limit) as r:
        small = await r.enqueue(120, size=300)
        (big,) = await r.enqueue(1, size=20_000)  # ~40 kB of random hex: over the limit even gzipped
        after = await r.enqueue(40, size=300)
        await r.settled()
        received = await r.received()
        assert [i for i in received if i in set(small + after)] == small + after  # in order, once each
        assert big not in received
        assert r.proxy.hits["too_large"] >= 3 and r.proxy.largest_forwarded <= limit
        assert r.pusher.stats.shrunk >= 2 and r.pusher.stats.given_up == 0
        (parked,) = list(read_refused(tmp_path / "ledger.sqlite", parked=True))
        assert parked.event_id == big and parked.reason.startswith("HTTP 413 for this event alone")
        # Retried alone when due, parked again while the proxy still refuses it; delivered once it is lifted.
        r.clock.advance(PARK_RETRY_MAX_S)
        r.loop.wake()
        await until(lambda: _attempts(tmp_path, big, 2), 10)
        r.proxy.body_limit = None
        r.clock.advance(PARK_RETRY_MAX_S)
        r.loop.wake()

        async def delivered() -> bool:
            return big in await r.received()

        await until(delivered, 10)
        assert (await r.ledger.outbox.stats()).events == 0


async def _attempts(tmp_path: Path, event_id: str, attempts: int) -> bool:
    return any(
        record.event_id == event_id and record.attempts >= attempts
        for record in read_refused(tmp_path / "ledger.sqlite", parked=True)
    )


@pytest.mark.parametrize("cls", [EventClass.TELEMETRY, EventClass.CONVERSION, EventClass.PRIVACY])
async def test_only_a_refusal_by_name_gives_up_telemetry_and_never_anything_else(
    tmp_path: Path, cls: EventClass
) -> None:
    async with rig(tmp_path) as r:
        good = await r.enqueue(10)
        # A producer's bug: a kind the contract does not allow. The store refuses it by name, with a reason.
        bad = await r.ledger.outbox.enqueue("bad kind!", cls, {"n": 1})
        r.loop.wake()
        await r.settled()
        assert set(good) <= set(await r.received())
        stats = await r.ledger.dead_letters.stats(r.clock.wall())
        if cls is EventClass.TELEMETRY:
            (dead,) = list(read_refused(tmp_path / "ledger.sqlite"))
            assert dead.event_id == bad and "kind" in dead.reason
            assert stats.dead_letter.events == 1 and stats.parked.events == 0
        else:
            # Privacy and conversion events are never given up: kept, retried when due, counted.
            assert stats.dead_letter.given_up == 0
            assert stats.parked.by_class[cls.wire] == 1
            r.clock.advance(PARK_RETRY_MAX_S)
            r.loop.wake()
            await until(lambda: _attempts(tmp_path, bad, 2), 10)
            assert (await r.ledger.outbox.stats()).by_class[cls.wire].events == 1
