"""The sync service: one cloud client, the puller and the pusher in their retry loops, the profile fetcher.

Built by the daemon when ``[sync] enabled``; its two loops live in the daemon's TaskGroup. Its ``stats`` feed
``gateway/health`` (backlog, drops, failures, cursor, last success ages).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.act.pickup import Order, OrderBook
from edge.clock import Clock
from edge.config.model import SyncSettings
from edge.decide.catalog import Catalog, merged_catalog
from edge.identity.consent import ConsentStore, ProfileCache
from edge.identity.eid import EidKey, EidResolver
from edge.identity.tokens import TokenVerifier
from edge.ledger import Ledger
from edge.sync.client import CloudClient
from edge.sync.loop import RetryLoop, Sleep
from edge.sync.mirror import Mirror, OfferOverlay
from edge.sync.profiles import ProfileFetcher
from edge.sync.pull import Puller
from edge.sync.push import Pusher
from edge.sync.stats import PullHealth, PushHealth, SyncStats
from edge.sync.wire import Change

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

log = logging.getLogger(__name__)


class SyncService:
    def __init__(
        self,
        settings: SyncSettings,
        *,
        store_id: str,
        token: str,
        ledger: Ledger,
        mirror: Mirror,
        consents: ConsentStore,
        profiles: ProfileCache,
        clock: Clock,
        offers: OfferUpdater | None = None,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock
        self.client = CloudClient(
            settings.url, store_id, token, timeout_s=settings.request_timeout_s, clock=clock
        )
        self.pusher = Pusher(
            ledger.outbox,
            ledger.dead_letters,
            self.client,
            clock,
            batch_events=settings.batch_events,
            batch_bytes=settings.batch_bytes,
            metrics=metrics,
        )
        self.push_loop = RetryLoop(
            "push", idle_s=settings.push_interval_s, retry_max_s=settings.retry_max_s, sleep=sleep
        )
        self.pull_loop = RetryLoop(
            "pull", idle_s=settings.pull_interval_s, retry_max_s=settings.retry_max_s, sleep=sleep
        )
        self.offers = offers
        self.fetcher = ProfileFetcher(
            self.client,
            consents,
            profiles,
            clock,
            timeout_s=settings.profile_timeout_s,
            fetch_timeout_s=settings.request_timeout_s,
            cloud_down=self.cloud_down,
            is_erased=lambda shopper_id: ledger.replica.tombstone(shopper_id) is not None,
            seen=ledger.seen.note,
        )
        self.puller = Puller(
            ledger.replica, self.client, mirror, page_limit=settings.page_limit, on_reset=self.fetcher.reset
        )

    def cloud_down(self) -> bool:
        """True while both directions fail: profile fetches then do not even try."""
        return self.pull_loop.state.failing and self.push_loop.state.failing

    async def run(self) -> None:
        """Both loops until cancelled (the daemon's TaskGroup owns this task)."""
        try:
            async with self.client, asyncio.TaskGroup() as group:
                group.create_task(self.pull_loop.run(self.puller.pull), name="sync-pull")
                group.create_task(self.push_loop.run(self.pusher.drain), name="sync-push")
                if self.offers is not None:
                    group.create_task(self.offers.run(), name="sync-offers")
        finally:
            await self.fetcher.close()

    def wake_push(self) -> None:
        self.push_loop.wake()

    async def stats(self) -> SyncStats:
        now = time.monotonic()

        def age(mono: float | None) -> float | None:
            return None if mono is None else round(now - mono, 1)

        push, pull = self.pusher.stats, self.puller.stats
        push_state, pull_state = self.push_loop.state, self.pull_loop.state
        refused = await self._ledger.dead_letters.stats(self._clock.wall())
        return SyncStats(
            cloud_down=self.cloud_down(),
            outbox=await self._ledger.outbox.stats(),
            push=PushHealth(
                batches=push.batches,
                events=push.events_sent,
                accepted=push.accepted,
                duplicates=push.duplicates,
                rejected=push.rejected,
                given_up=push.given_up,
                parked=push.parked,
                shrunk=push.shrunk,
                failures=dict(push_state.failures),
                retry_after=push_state.retry_after,
                last_delay_s=round(push_state.last_delay_s, 2),
                last_success_age_s=age(push_state.last_success_mono),
            ),
            parked=refused.parked,
            dead_letter=refused.dead_letter,
            pull=PullHealth(
                pages=pull.pages,
                changes=pull.changes,
                rejected=dict(pull.rejected),
                failures=dict(pull_state.failures),
                cursor=pull.cursor,
                resets=pull.resets,
                rebuilds=pull.rebuilds,
                swept=dict(pull.swept),
                last_success_age_s=age(pull_state.last_success_mono),
            ),
            profiles=self.fetcher.stats(),
        )


class CatalogTarget(Protocol):
    """Where merged catalogs go: the decision engine's owner (edge/flow/decider.py)."""

    async def replace_catalog(self, catalog: Catalog, day_counts: list[tuple[str, str, int]]) -> None: ...


class OfferUpdater:
    """Cloud offers and inventory into the decision engine: the latest overlay wins, one rebuild at a time."""

    def __init__(
        self,
        target: CatalogTarget,
        base: Catalog,
        mirror: Mirror,
        ledger: Ledger,
        day_start: Callable[[], float],
    ) -> None:
        self._target = target
        self._base = base
        self._mirror = mirror
        self._ledger = ledger
        self._day_start = day_start
        self._dirty = asyncio.Event()
        self.rebuilds = 0

    def changed(self, _overlay: OfferOverlay) -> None:
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            overlay = self._mirror.overlay
            catalog = merged_catalog(self._base, overlay.offers, overlay.unavailable)
            counts = await self._ledger.offer_counts_since(self._day_start())
            await self._target.replace_catalog(catalog, counts)
            self.rebuilds += 1


async def build_sync(
    settings: SyncSettings,
    *,
    store_id: str,
    token: str,
    ledger: Ledger,
    consents: ConsentStore,
    profiles: ProfileCache,
    verifier: TokenVerifier,
    eid: EidResolver | None,
    catalogs: CatalogTarget,
    base_catalog: Catalog,
    forget_shopper: Callable[[str], None],
    clock: Clock,
    day_start: Callable[[], float],
    file_keys: Mapping[str, Ed25519PublicKey] | None = None,
    metrics: Metrics | None = None,
    orders: OrderBook | None = None,
    order_listener: Callable[[str, Order | None], None] | None = None,
    weather_listener: Callable[[Change], None] | None = None,
) -> SyncService:
    """Wire sync into the running stages, after loading what earlier pulls stored.

    ``catalogs`` takes the file's catalog (``base_catalog``) merged with the cloud's offers and inventory;
    ``forget_shopper`` is told of every erasure the cloud sends. ``file_keys``: the token keys of
    identity.public_key_files the verifier started with (revocations out).
    """
    replica = ledger.replica
    mirror = Mirror(
        consents=consents,
        profiles=profiles,
        verifier=verifier,
        eid=eid,
        is_erased=lambda shopper_id, at_wall: (replica.tombstone(shopper_id) or -math.inf) >= at_wall,
        file_keys=file_keys,
        orders=orders,
    )
    snapshot = await replica.load()
    mirror.load(
        profiles={k: v for k, v in snapshot.profiles.items() if replica.tombstone(k) is None},
        token_keys=snapshot.token_keys,
        eid_keys=[EidKey(*row) for row in snapshot.eid_keys],
        offers=snapshot.offers,
        unavailable=[offer_id for offer_id, (available, _) in snapshot.inventory.items() if not available],
        orders=[Order(*row) for row in snapshot.orders if replica.tombstone(row[1]) is None],
    )
    mirror.erasure_listeners.append(forget_shopper)
    if order_listener is not None:
        mirror.order_listeners.append(order_listener)
    if weather_listener is not None:
        mirror.weather_listeners.append(weather_listener)
    offers = OfferUpdater(catalogs, base_catalog, mirror, ledger, day_start)
    service = SyncService(
        settings,
        store_id=store_id,
        token=token,
        ledger=ledger,
        mirror=mirror,
        consents=consents,
        profiles=profiles,
        clock=clock,
        offers=offers,
        metrics=metrics,
    )
    offers.changed(mirror.overlay)  # what earlier pulls stored applies at once
    mirror.offer_listeners.append(offers.changed)
    log.info(
        "cloud sync to %s: cursor %s, %d profiles, %d cloud token keys, %d tombstones",
        settings.url,
        snapshot.cursor,
        len(snapshot.profiles),
        len(snapshot.token_keys),
        len(snapshot.tombstones),
    )
    return service
