"""The cache-miss policy: bounded wait, single flight, negative cache, no wait while the cloud is down.

The client here is a stand-in for the network only; the fetch against the real reference store is in
test_gateway_sync.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.clock import ManualClock
from edge.events import Purpose
from edge.identity import ConsentStore, ProfileCache
from edge.ledger import Ledger
from edge.sync.client import CloudUnavailableError
from edge.sync.parse import FetchedProfile
from edge.sync.profiles import ProfileFetcher
from tests.support.wait import until


class Cloud:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.known: dict[str, FetchedProfile] = {}
        self.down = False
        # A slow cloud: an answer waits until the test opens the gate (never for a time).
        self.gate: asyncio.Event | None = None

    async def fetch_profile(self, shopper_id: str, timeout_s: float) -> FetchedProfile | None:
        self.calls.append(shopper_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise CloudUnavailableError("unreachable")
        return self.known.get(shopper_id)


def fetched(shopper_id: str, at: float) -> FetchedProfile:
    return FetchedProfile(shopper_id, {"visits": 3}, [(Purpose.PERSONALIZATION, True, at, "app")], None)


async def test_fetch_policies(tmp_path: Path) -> None:
    clock = ManualClock()
    cloud = Cloud()
    async with Ledger(tmp_path / "l.sqlite", clock) as ledger:
        consents, profiles = ConsentStore(ledger, clock), ProfileCache()
        down = {"value": False}
        fetcher = ProfileFetcher(
            cloud,
            consents,
            profiles,
            clock,
            timeout_s=0.2,
            fetch_timeout_s=5,
            cloud_down=lambda: down["value"],
        )
        cloud.known["p-1"] = fetched("p-1", clock.wall() - 10)
        assert await fetcher.ensure("p-1") == "fetched"
        assert profiles.get("p-1") == {"visits": 3}
        assert consents.has("p-1", Purpose.PERSONALIZATION)
        # durable, and marked as the cloud's so it is not echoed back as an event
        assert [(r.shopper_id, r.source) for r in await ledger.load_consents()] == [("p-1", "cloud")]
        assert (await ledger.outbox.stats()).events == 0
        assert await fetcher.ensure("p-1") == "cached"

        # unknown: asked once, then remembered until the negative TTL passes
        assert await fetcher.ensure("p-x") == "not_found"
        assert await fetcher.ensure("p-x") == "unknown"
        assert cloud.calls.count("p-x") == 1
        clock.advance(301)
        assert await fetcher.ensure("p-x") == "not_found"

        # slow: concurrent check-ins share one fetch, each waits at most timeout_s, the fetch completes later
        cloud.gate = asyncio.Event()
        cloud.known["p-2"] = fetched("p-2", clock.wall() - 10)
        outcomes = await asyncio.gather(fetcher.ensure("p-2"), fetcher.ensure("p-2"))
        assert outcomes == ["timeout", "timeout"]
        assert cloud.calls.count("p-2") == 1
        assert "p-2" not in profiles
        cloud.gate.set()  # the answer arrives after both check-ins went ahead without it
        await until(lambda: "p-2" in profiles)  # the fetch's last step: its consents are applied before
        assert await fetcher.ensure("p-2") == "cached"
        assert cloud.calls.count("p-2") == 1

        # the cloud known to be down: no wait, no call
        down["value"] = True
        calls = len(cloud.calls)
        assert await fetcher.ensure("p-3") == "cloud_down"
        assert len(cloud.calls) == calls

        # a failing fetch is reported, nothing cached
        down["value"] = False
        cloud.gate, cloud.down = None, True
        assert await fetcher.ensure("p-4") == "failed.unreachable"
        assert "p-4" not in profiles
        await fetcher.close()


async def test_an_evicted_profile_is_fetched_again_and_the_fetch_is_a_visit(tmp_path: Path) -> None:
    clock = ManualClock()
    cloud = Cloud()
    async with Ledger(tmp_path / "l.sqlite", clock) as ledger:
        consents, profiles = ConsentStore(ledger, clock), ProfileCache()
        seen: list[str] = []
        fetcher = ProfileFetcher(
            cloud, consents, profiles, clock, timeout_s=1, fetch_timeout_s=5, seen=seen.append
        )
        cloud.known["p-1"] = fetched("p-1", clock.wall() - 10)
        assert await fetcher.ensure("p-1") == "fetched"
        assert seen == ["p-1"]
        # evicted (ledger.retention.profiles_unseen_days): the consents stay, the profile goes
        profiles.forget("p-1")
        assert consents.has("p-1", Purpose.PERSONALIZATION)
        assert await fetcher.ensure("p-1") == "fetched"
        assert profiles.get("p-1") == {"visits": 3} and seen == ["p-1", "p-1"]
        # the cloud holds consents but no profile: asked once, then remembered like a 404
        cloud.known["p-2"] = FetchedProfile(
            "p-2", None, [(Purpose.MEASUREMENT, True, clock.wall(), "app")], None
        )
        assert await fetcher.ensure("p-2") == "fetched"
        assert await fetcher.ensure("p-2") == "unknown"
        assert cloud.calls.count("p-2") == 1 and seen == ["p-1", "p-1"]
        await fetcher.close()
