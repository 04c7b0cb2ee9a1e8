"""The decision policy: eligibility -> scores -> holdout -> exploration -> decision record (docs/decisions.md).

Pure CPU and synchronous; one engine lives in one worker thread, which is the only caller.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from edge.clock import Clock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog
from edge.decide.eligibility import Eligibility, Verdict
from edge.decide.features import FeatureBuilder, LocalTime
from edge.decide.logged import ContextEncoder
from edge.decide.manifest import N_FEATURES
from edge.decide.record import DecisionIds, candidates_of
from edge.decide.scorer import Scorer
from edge.events import Candidates, Decision, DecisionContext, Purpose

log = logging.getLogger(__name__)

HOLDOUT_BUCKETS: Final = 10_000  # percent * 100: holdout shares settable to 0.01%
_PERSONALIZATION: Final = Purpose.PERSONALIZATION
MAX_CACHED_BUCKETS: Final = 50_000  # holdout buckets remembered (a sha256 each); a day's shoppers fit
# Recent decisions kept for shadow-scoring a new model (edge/decide/lifecycle.py): at most this many, and at
# most RECENT_BYTES of feature matrices (200 x 50 offers x 22 features x 4 bytes = 880 kB).
RECENT_DECISIONS: Final = 200
RECENT_BYTES: Final = 8_000_000

# One recent decision: its [N, F] feature matrix (read-only), the eligibility of every offer (the verdict's
# list, shared and never mutated) and the chosen offer's index in engine order (-1: none shown).
RecentDecision = tuple[npt.NDArray[np.float32], list[bool], int]
# As stored: the matrix as immutable bytes (``tobytes`` costs ~0.15 us for 50 offers, a third of ``copy``).
_Stored = tuple[bytes, list[bool], int]


class FallbackSource(Protocol):
    """A display's idle content (the config's per-display fallback fits)."""

    @property
    def template(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Fallback:
    """Idle content when the caller has no display settings at hand (tests, tools)."""

    template: str = "fallback"
    data: dict[str, Any] = field(default_factory=dict)


def holdout_bucket(shopper_id: str, salt: str) -> int:
    """Stable bucket 0..9999: first 8 bytes of sha256(salt:shopper_id), big-endian, mod 10000."""
    digest = hashlib.sha256(f"{salt}:{shopper_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS


def is_holdout(shopper_id: str, salt: str, percent: float) -> bool:
    return holdout_bucket(shopper_id, salt) < percent * (HOLDOUT_BUCKETS / 100)


class _Model:
    """The scorer the engine runs, with its run bound to the engine's feature buffer: swapped as one object."""

    __slots__ = ("complements", "run", "scorer", "version")

    def __init__(self, scorer: Scorer, features: FeatureBuilder) -> None:
        self.scorer = scorer
        self.run = scorer.bind(features.buffer)
        self.version = scorer.version
        # The model's basket rules compiled against the catalog: a swap changes model and rules together.
        self.complements = features.compile(scorer.basket_rules)


def greedy_index(
    scores: npt.NDArray[np.float32],
    value_weight: npt.NDArray[np.float32],
    penalty: npt.NDArray[np.float32],
    blocked: Iterable[int],
    out: npt.NDArray[np.float32],
) -> int:
    """The offer the policy shows unless it explores: the highest expected value ``score * (1 + value)`` among
    eligible offers (``penalty`` -inf and ``blocked`` are not), the first in candidate order on a tie.

    ``out`` is scratch space of the same shape (the engine reuses one). An off-policy evaluation calls this
    with a candidate model's scores (edge/measure/ope.py), so both choose by the same rule.
    """
    np.multiply(scores, value_weight, out=out)
    out += penalty
    for index in blocked:
        out[index] = -np.inf
    return int(out.argmax())


def choice_propensity(*, greedy: bool, epsilon: float, n_eligible: int) -> float:
    """P(an eligible offer | context) under the policy: the greedy offer's share plus its share of exploration
    (``epsilon`` of decisions pick uniformly among the ``n_eligible`` eligible offers)."""
    return (1.0 - epsilon) * greedy + epsilon / n_eligible


def recent_capacity(n_offers: int) -> int:
    """How many recent decisions an engine over ``n_offers`` keeps: RECENT_DECISIONS within RECENT_BYTES."""
    matrix_bytes = max(n_offers, 1) * N_FEATURES * 4
    return max(1, min(RECENT_DECISIONS, RECENT_BYTES // matrix_bytes))


class DecisionEngine:
    """Chooses what one display shows for one context; keeps the per-shopper caps and per-display cooldowns.

    The model can be swapped while the engine runs (``swap_scorer``): it is one attribute, read once per
    decision, so a decision runs entirely on the old or entirely on the new model.
    """

    def __init__(
        self, catalog: Catalog, scorer: Scorer, settings: PolicySettings, clock: Clock, rng: random.Random
    ) -> None:
        # Sorted by priority (high first) then id: argmax returns the first maximum, which is the tie-break.
        offers = tuple(sorted(catalog.offers, key=lambda offer: (-offer.priority, offer.id)))
        self._offers = offers
        self._ids = tuple(offer.id for offer in offers)
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._epsilon = settings.epsilon
        self._holdout_below = settings.holdout_percent * (HOLDOUT_BUCKETS / 100)
        self._features = FeatureBuilder(offers, settings.tz)
        self._model = _Model(scorer, self._features)
        # Bounded ring of recent decisions for shadow scoring; a deque's append is O(1) and thread-safe.
        self._recent: deque[_Stored] = deque(maxlen=recent_capacity(len(offers)))
        self._remember = self._recent.append
        self._ids_gen = DecisionIds()
        self._eligibility = Eligibility(offers)
        # Expected value of showing = P(conversion) * (1 + value): value 0 offers still rank by likelihood.
        self._value_weight = np.array([1.0 + offer.value for offer in offers], dtype=np.float32)
        self._value = np.empty(len(offers), dtype=np.float32)
        self._buckets: dict[str, int] = {}
        self._context = ContextEncoder()
        self.counters: Counter[str] = Counter()  # odd inputs survived, for health

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def with_catalog(self, catalog: Catalog) -> DecisionEngine:
        """A new engine for ``catalog`` with this one's model, policy, clock and random source.

        Today's per-shopper counts are not carried (offer indices differ); the caller seeds them from the
        ledger. Per-display cooldowns start afresh.
        """
        return DecisionEngine(catalog, self._model.scorer, self._settings, self._clock, self._rng)

    @property
    def offer_ids(self) -> tuple[str, ...]:
        """Offer ids in candidate order (priority high first, then id)."""
        return self._ids

    # ----- the model -----
    @property
    def scorer(self) -> Scorer:
        """The model decisions run on now."""
        return self._model.scorer

    @property
    def model_version(self) -> str:
        return self._model.version

    def swap_scorer(self, scorer: Scorer) -> Scorer:
        """Run every later decision on ``scorer``; returns the one it replaces. Safe from any thread.

        The new scorer is bound to the feature buffer first; the swap itself is a single attribute
        assignment, and ``decide`` reads that attribute once, so no decision mixes two models.
        """
        model = _Model(scorer, self._features)
        previous = self._model
        self._model = model
        return previous.scorer

    @property
    def value_weight(self) -> npt.NDArray[np.float32]:
        """Per offer (engine order) the factor turning a score into an expected value: ``1 + value``."""
        return self._value_weight

    def recent_decisions(self) -> tuple[RecentDecision, ...]:
        """The last decisions (oldest first): feature matrix (read-only), eligibility, chosen index or -1.

        A snapshot taken in one step (no lock: entries are immutable once appended), so any thread may call it.
        """
        for _ in range(3):
            try:
                stored = tuple(self._recent)
                break
            except RuntimeError:  # "deque mutated during iteration": a decision landed mid-copy; again
                continue
        else:
            stored = ()
        return tuple(
            (np.frombuffer(blob, dtype=np.float32).reshape(-1, N_FEATURES), eligible, chosen)
            for blob, eligible, chosen in stored
        )

    def decide(
        self, ctx: DecisionContext, consents: frozenset[Purpose], fallback: FallbackSource | None = None
    ) -> Decision:
        """Choose what ``ctx.display_id`` shows now; never raises on odd profiles or contexts."""
        at_wall, when = self._local(ctx.at_wall)
        shopper_id = ctx.shopper_id
        profile = ctx.profile
        # Context-only unless an identified shopper consented to personalization and has a profile.
        personalized = (
            shopper_id is not None and _PERSONALIZATION in consents and isinstance(profile, Mapping)
        )
        model = self._model  # read once: a concurrent swap_scorer affects the next decision, not this one
        # The basket is the shopper's: like the profile, only with personalization consent.
        features = self._features.fill(
            profile if personalized else None,
            ctx.audience,
            when,
            ctx.weather,
            ctx.basket if personalized else (),
            ctx.trends,
            model.complements,
        )
        scores = model.run()  # one session run for every offer, eligible or not
        now = self._clock.monotonic()
        verdict = self._eligibility.verdict(
            ctx.zone,
            when,
            personalized=personalized,
            shopper_id=shopper_id,
            display_id=ctx.display_id,
            now=now,
        )
        candidates = candidates_of(self._ids, verdict.eligible, scores.tolist(), verdict.reasons)
        n_eligible = verdict.n_eligible
        holdout = shopper_id is not None and self._in_holdout(shopper_id)
        context = self._context.encode(ctx, personalized=personalized)
        if holdout or n_eligible == 0:
            self._remember((features.tobytes(), verdict.eligible, -1))
            decision = self._record_fallback(
                ctx,
                at_wall,
                fallback,
                candidates,
                model.version,
                holdout=holdout,
                personalized=personalized,
                context=context,
            )
            if not holdout or n_eligible == 0:
                return decision
            # What a held-out shopper would have been shown, chosen exactly as below (the exploration draw
            # too), recorded for the holdout comparison (docs/measurement.md); nothing is counted for caps.
            chosen, _, _ = self._choose(scores, verdict, n_eligible)
            return replace(decision, counterfactual_offer_id=self._offers[chosen].id)

        chosen, greedy, explored = self._choose(scores, verdict, n_eligible)
        epsilon = self._epsilon
        propensity = choice_propensity(greedy=chosen == greedy, epsilon=epsilon, n_eligible=n_eligible)
        self._eligibility.record(chosen, shopper_id, ctx.display_id, when.day, now)
        self._remember((features.tobytes(), verdict.eligible, chosen))
        offer = self._offers[chosen]
        return Decision(
            decision_id=self._ids_gen.next(at_wall),
            display_id=ctx.display_id,
            zone=ctx.zone,
            at_wall=at_wall,
            shopper_id=shopper_id,
            offer_id=offer.id,
            template=offer.template,
            data=offer.data,
            model_version=model.version,
            propensity=propensity,
            explored=explored,
            holdout=False,
            personalized=personalized,
            candidates=candidates,
            features=None if shopper_id is None else features[chosen].tobytes(),
            context=context,
        )

    def fallback(self, display_id: str, zone: str, template: str, data: dict[str, Any]) -> Decision:
        """A record for showing the display's idle content outside a decision (expiry, start-up)."""
        at_wall = self._clock.wall()
        return Decision(
            decision_id=self._ids_gen.next(at_wall),
            display_id=display_id,
            zone=zone,
            at_wall=at_wall,
            shopper_id=None,
            offer_id=None,
            template=template,
            data=data,
            model_version=self._model.version,
            propensity=1.0,
            explored=False,
            holdout=False,
            personalized=False,
        )

    # ----- counters (restart, privacy) -----
    def seed_counts(self, rows: Iterable[tuple[str, str, int]]) -> int:
        """Reload today's (shopper_id, offer_id, times chosen) after a restart; "today" is the store's day now."""
        _, when = self._local(self._clock.wall())
        return self._eligibility.seed_counts(rows, when.day)

    def forget_shopper(self, shopper_id: str) -> bool:
        """Drop everything the engine holds about a shopper (erase request); True if there was something."""
        self._buckets.pop(shopper_id, None)
        return self._eligibility.forget_shopper(shopper_id)

    def shopper_counts(self, shopper_id: str) -> dict[str, int]:
        """Today's times chosen per offer for one shopper (export request)."""
        return self._eligibility.shopper_counts(shopper_id)

    # ----- helpers -----
    def _choose(
        self, scores: npt.NDArray[np.float32], verdict: Verdict, n_eligible: int
    ) -> tuple[int, int, bool]:
        """(chosen, greedy, explored): the greedy offer, or with probability epsilon a uniform eligible one."""
        greedy = greedy_index(scores, self._value_weight, verdict.penalty, verdict.blocked, self._value)
        epsilon = self._epsilon
        explored = epsilon > 0 and self._rng.random() < epsilon
        chosen = verdict.indices()[self._rng.randrange(n_eligible)] if explored else greedy
        return chosen, greedy, explored

    def _local(self, at_wall: float) -> tuple[float, LocalTime]:
        try:
            return at_wall, self._features.resolver.resolve(at_wall)
        except (ValueError, OverflowError, OSError):
            # A context stamped with nan/inf or a year datetime cannot hold: decide for "now" instead.
            self.counters["bad_at_wall"] += 1
            if self.counters["bad_at_wall"] == 1:
                log.warning("decision context at_wall=%r unusable; using the clock (counted)", at_wall)
            now = self._clock.wall()
            return now, self._features.resolver.resolve(now)

    def _in_holdout(self, shopper_id: str) -> bool:
        if self._holdout_below <= 0:
            return False
        bucket = self._buckets.get(shopper_id)
        if bucket is None:
            if len(self._buckets) >= MAX_CACHED_BUCKETS:
                self._buckets.clear()
            bucket = holdout_bucket(shopper_id, self._settings.holdout_salt)
            self._buckets[shopper_id] = bucket
        return bucket < self._holdout_below

    def _record_fallback(
        self,
        ctx: DecisionContext,
        at_wall: float,
        fallback: FallbackSource | None,
        candidates: Candidates,
        model_version: str,
        *,
        holdout: bool,
        personalized: bool,
        context: bytes,
    ) -> Decision:
        return Decision(
            decision_id=self._ids_gen.next(at_wall),
            display_id=ctx.display_id,
            zone=ctx.zone,
            at_wall=at_wall,
            shopper_id=ctx.shopper_id,
            offer_id=None,
            template=fallback.template if fallback is not None else "fallback",
            data=fallback.data if fallback is not None else {},
            model_version=model_version,
            propensity=1.0,
            explored=False,
            holdout=holdout,
            personalized=personalized,
            candidates=candidates,
            context=context,
        )
