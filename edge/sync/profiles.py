"""Cache misses: a verified shopper whose profile the store does not hold (never seen here, evicted after
``ledger.retention.profiles_unseen_days``, or fetched before a restart) -> one bounded profile fetch.

The check-in waits at most ``timeout_s`` (a quarter second by default) and not at all while the cloud is
known to be down: the screen never waits on the internet. A fetch that outlives the wait still completes in
the background, so the shopper's next check-in is personal. Unknown shoppers (and those the cloud holds no profile for) are
remembered for a while so a stream of tokens for them cannot hammer the cloud.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from edge.clock import Clock
from edge.identity.consent import PROFILE_CACHE_MAX, ConsentStore, ProfileCache
from edge.ledger import LedgerError
from edge.sync.client import CloudRefusedError, CloudUnavailableError
from edge.sync.mirror import CLOUD_SOURCE
from edge.sync.parse import FetchedProfile

log = logging.getLogger(__name__)

MAX_INFLIGHT: Final = 16
NEGATIVE_MAX: Final = 10_000


class FetchClient(Protocol):
    async def fetch_profile(self, shopper_id: str, timeout_s: float) -> FetchedProfile | None: ...


@dataclass(slots=True, frozen=True)
class ProfileStats:
    """A snapshot for gateway/health (``sync.profiles``); ``outcomes`` holds only the outcomes that happened."""

    inflight: int
    unknown_cached: int  # shoppers the cloud does not know, remembered for a while
    outcomes: Mapping[str, int]


class ProfileFetcher:
    def __init__(
        self,
        client: FetchClient,
        consents: ConsentStore,
        profiles: ProfileCache,
        clock: Clock,
        *,
        timeout_s: float,
        fetch_timeout_s: float,
        cloud_down: Callable[[], bool] = lambda: False,
        is_erased: Callable[[str], bool] = lambda _shopper: False,
        negative_ttl_s: float = 300.0,
        seen: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._consents = consents
        self._profiles = profiles
        self._clock = clock
        self._timeout_s = timeout_s
        self._fetch_timeout_s = fetch_timeout_s
        self._cloud_down = cloud_down
        self._is_erased = is_erased
        self._negative_ttl_s = negative_ttl_s
        # Told of every profile fetched: a visit, the clock of the profile eviction (edge/ledger/seen.py).
        self._seen = seen
        self._unknown: OrderedDict[str, float] = (
            OrderedDict()
        )  # shopper -> monotonic time it may be asked again
        self._inflight: dict[str, asyncio.Task[str]] = {}
        # Profiles fetched (memory only, unlike pulled ones), so a cursor reset can let go of the old cloud's.
        self._fetched: OrderedDict[str, None] = OrderedDict()
        self.outcomes: Counter[str] = Counter()

    def _known(self, shopper_id: str) -> bool:
        # The profile, not the consents: a shopper whose profile was evicted (not seen for
        # ledger.retention.profiles_unseen_days) or fetched before a restart keeps their consents, and their
        # next visit must fetch the profile again rather than go without it for ever.
        return shopper_id in self._profiles

    async def ensure(self, shopper_id: str) -> str:
        """Make the shopper's profile and consents local if we can within the wait; returns what happened."""
        outcome = await self._ensure(shopper_id)
        self.outcomes[outcome] += 1
        return outcome

    async def _ensure(self, shopper_id: str) -> str:
        if self._known(shopper_id):
            return "cached"
        if self._is_erased(shopper_id):
            return "erased"
        retry_at = self._unknown.get(shopper_id)
        if retry_at is not None:
            if retry_at > self._clock.monotonic():
                return "unknown"
            del self._unknown[shopper_id]
        if self._cloud_down():
            return "cloud_down"
        task = self._inflight.get(shopper_id)
        if task is None:
            if len(self._inflight) >= MAX_INFLIGHT:
                return "busy"
            task = asyncio.create_task(self._fetch(shopper_id), name=f"profile-fetch-{shopper_id}")
            self._inflight[shopper_id] = task
            task.add_done_callback(lambda _task: self._inflight.pop(shopper_id, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=self._timeout_s)
        except TimeoutError:
            return "timeout"

    async def _fetch(self, shopper_id: str) -> str:
        try:
            fetched = await self._client.fetch_profile(shopper_id, self._fetch_timeout_s)
        except (CloudUnavailableError, CloudRefusedError) as error:
            log.debug("profile fetch failed: %s", error.reason)
            return f"failed.{error.reason}"
        if fetched is None:
            self._remember_unknown(shopper_id)
            return "not_found"
        if self._is_erased(shopper_id):
            return "erased"
        # Consents first, durable through the consent store (marked as the cloud's: not echoed back).
        for purpose, granted, at_wall, _source in fetched.consents:
            try:
                await self._consents.apply(shopper_id, purpose, granted, at_wall, CLOUD_SOURCE)
            except (ValueError, LedgerError) as error:
                # Not applied means not granted: the check-in goes ahead without it (context-only).
                log.warning("fetched consent of %s not applied: %s", purpose, error)
        if fetched.profile is None:
            # Known to the cloud without a profile: asked again only after the negative TTL, like a 404.
            self._remember_unknown(shopper_id)
            return "fetched"
        self._profiles.put(shopper_id, fetched.profile)
        if self._seen is not None:
            self._seen(shopper_id)
        self._fetched[shopper_id] = None
        self._fetched.move_to_end(shopper_id)
        while len(self._fetched) > PROFILE_CACHE_MAX:  # the cache forgot the oldest of them already
            self._fetched.popitem(last=False)
        return "fetched"

    def _remember_unknown(self, shopper_id: str) -> None:
        self._unknown[shopper_id] = self._clock.monotonic() + self._negative_ttl_s
        while len(self._unknown) > NEGATIVE_MAX:
            self._unknown.popitem(last=False)

    def reset(self) -> None:
        """A cursor reset: the cloud is another database now. What it said before (profiles fetched, shoppers
        it did not know) no longer holds; the rebuild's pages bring back what the new cloud has."""
        for shopper_id in self._fetched:
            self._profiles.forget(shopper_id)
        self._fetched.clear()
        self._unknown.clear()

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> ProfileStats:
        return ProfileStats(len(self._inflight), len(self._unknown), dict(self.outcomes))
