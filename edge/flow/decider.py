"""The one owner of the decision engine and of the thread it runs in.

The model and its counters (caps, cooldowns) are confined to one worker thread: no locks, and the event loop
never waits on ONNX. Engine replacements (a new catalog from the cloud, a new policy or model from a config
push) are built in that same thread, in order with the decisions queued before them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from edge.clock import Clock
from edge.decide.catalog import Catalog
from edge.decide.policy import DecisionEngine, FallbackSource
from edge.events import Decision, DecisionContext, Purpose, Weather
from edge.identity import ConsentStore, ProfileCache

if TYPE_CHECKING:
    from edge.context.service import StoreContext
    from edge.control.metrics import Histogram, Metrics

log = logging.getLogger(__name__)

DayCounts = list[tuple[str, str, int]]


def _timed_decide(
    histogram: Histogram,
    decide: Callable[[DecisionContext, frozenset[Purpose], FallbackSource | None], Decision],
    context: DecisionContext,
    consents: frozenset[Purpose],
    fallback: FallbackSource | None,
) -> Decision:
    """The engine's decide call, timed in the decision thread (the histogram's only writer)."""
    started = perf_counter()
    decision = decide(context, consents, fallback)
    histogram.observe(perf_counter() - started)
    return decision


@dataclass(slots=True, frozen=True)
class DeciderStats:
    decisions: int  # made since the gateway started
    model_version: str  # of the model decisions run on now


class Decider:
    """Decides what a display shows for a shopper (or for nobody), in the engine's own thread."""

    def __init__(
        self,
        engine: DecisionEngine,
        *,
        consents: ConsentStore,
        profiles: ProfileCache,
        audience: Callable[[str], int],
        clock: Clock,
        fallbacks: Mapping[str, FallbackSource] | None = None,
        metrics: Metrics | None = None,
        observers: Sequence[Callable[[Decision], None]] = (),
        context: StoreContext | None = None,
    ) -> None:
        self._engine = engine
        self._consents = consents
        self._profiles = profiles
        self._audience = audience
        self._clock = clock
        self._fallbacks = dict(fallbacks or {})
        # The decision stage's latency; None costs one check per decision.
        self._metrics = metrics
        # Observers of every decision (the demo prints them).
        self._observers = tuple(observers)
        # The store's weather and trends, the shopper's basket (edge/context/); None: decide without them.
        self._context = context
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decide")
        self.decisions = 0
        self.by_kind: Counter[str] = Counter()

    def stats(self) -> DeciderStats:
        return DeciderStats(self.decisions, self._engine.model_version)

    @property
    def engine(self) -> DecisionEngine:
        """The engine decisions run on now (the model store swaps its scorer in place)."""
        return self._engine

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    async def decide(self, display_id: str, zone: str, shopper_id: str | None) -> Decision:
        consents = self._consents.granted(shopper_id) if shopper_id else frozenset()
        personal = shopper_id is not None and Purpose.PERSONALIZATION in consents
        profile = self._profiles.get(shopper_id) if personal and shopper_id is not None else None
        now = self._clock.wall()
        weather: Weather | None = None
        basket: tuple[str, ...] = ()
        trends: Mapping[str, float] | None = None
        if self._context is not None:
            # The basket is the shopper's, like the profile: only with personalization consent.
            weather, basket, trends = self._context.decision_inputs(
                shopper_id, personal=personal, now_wall=now
            )
        context = DecisionContext(
            display_id=display_id,
            zone=zone,
            at_wall=now,
            audience=self._audience(zone),
            shopper_id=shopper_id,
            profile=profile,
            weather=weather,
            basket=basket,
            trends=trends,
        )
        loop = asyncio.get_running_loop()
        fallback = self._fallbacks.get(display_id)
        if self._metrics is None:
            decision = await loop.run_in_executor(
                self._executor, self._engine.decide, context, consents, fallback
            )
        else:
            decision = await loop.run_in_executor(
                self._executor,
                _timed_decide,
                self._metrics.decision,
                self._engine.decide,
                context,
                consents,
                fallback,
            )
        self.decisions += 1
        kind = "holdout" if decision.holdout else "fallback" if decision.offer_id is None else "offer"
        self.by_kind[kind] += 1
        for observer in self._observers:
            observer(decision)
        return decision

    async def replace_catalog(self, catalog: Catalog, day_counts: DayCounts) -> None:
        """Decide with ``catalog`` from the next decision on (cloud offers and inventory, live)."""
        await self._install(lambda: self._engine.with_catalog(catalog), day_counts)
        log.info("offer catalog replaced: %d offers", len(catalog.offers))

    async def replace_engine(self, engine: DecisionEngine, day_counts: DayCounts) -> None:
        """Decide with ``engine`` (a new model, catalog or policy) from the next decision on."""
        await self._install(lambda: engine, day_counts)
        log.info(
            "decision engine replaced: model %s, %d offers", engine.model_version, len(engine.catalog.offers)
        )

    async def _install(self, make: Callable[[], DecisionEngine], day_counts: DayCounts) -> None:
        def build() -> DecisionEngine:
            engine = make()
            engine.seed_counts(day_counts)
            return engine

        # Built in the engine's own thread, in order with the decisions queued before it.
        engine = await asyncio.get_running_loop().run_in_executor(self._executor, build)
        if engine.scorer is not self._engine.scorer:
            engine.swap_scorer(self._engine.scorer)  # a model swap landed on the old engine meanwhile
        self._engine = engine

    def forget_shopper(self, shopper_id: str) -> None:
        """An erased shopper: the day's caps let go of them, in the engine's thread, in order with decisions."""
        self._executor.submit(self._engine.forget_shopper, shopper_id)
