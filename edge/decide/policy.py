"""The decision policy: eligibility -> scores -> holdout -> exploration -> decision record (docs/decisions.md).

Pure CPU and synchronous; one engine lives in one worker thread, which is the only caller.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.clock import Clock
from edge.decide.catalog import Catalog
from edge.decide.eligibility import Eligibility
from edge.decide.features import FeatureBuilder, LocalTime
from edge.decide.record import DecisionIds, candidates_of
from edge.decide.scorer import Scorer
from edge.events import Candidates, Decision, DecisionContext, Purpose

log = logging.getLogger(__name__)

HOLDOUT_BUCKETS: Final = 10_000  # percent * 100: holdout shares settable to 0.01%
_PERSONALIZATION: Final = Purpose.PERSONALIZATION
MAX_CACHED_BUCKETS: Final = 50_000  # holdout buckets remembered (a sha256 each); a day's shoppers fit


class PolicySettings(BaseModel):
    """Exploration, holdout and the store's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(
        default=0.05, ge=0, le=1, description="Share of decisions that pick uniformly among eligible offers."
    )
    holdout_percent: float = Field(
        default=5.0,
        ge=0,
        le=50,
        description="Identified shoppers kept on the fallback as a control group (%).",
    )
    holdout_salt: str = Field(
        default="edge-holdout-v1", min_length=1, description="Salt of the holdout hash; change it to redraw."
    )
    tz: str = Field(
        default="UTC", description="Store time zone (IANA name) for offer windows and daily caps."
    )

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone '{value}'"
            raise ValueError(msg) from exc
        return value


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


class DecisionEngine:
    """Chooses what one display shows for one context; keeps the per-shopper caps and per-display cooldowns."""

    def __init__(
        self, catalog: Catalog, scorer: Scorer, settings: PolicySettings, clock: Clock, rng: random.Random
    ) -> None:
        # Sorted by priority (high first) then id: argmax returns the first maximum, which is the tie-break.
        offers = tuple(sorted(catalog.offers, key=lambda offer: (-offer.priority, offer.id)))
        self._offers = offers
        self._ids = tuple(offer.id for offer in offers)
        self._catalog = catalog
        self._scorer = scorer
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._epsilon = settings.epsilon
        self._holdout_below = settings.holdout_percent * (HOLDOUT_BUCKETS / 100)
        self._features = FeatureBuilder(offers, settings.tz)
        self._score = scorer.bind(self._features.buffer)
        self._version = scorer.version
        self._ids_gen = DecisionIds()
        self._eligibility = Eligibility(offers)
        # Expected value of showing = P(conversion) * (1 + value): value 0 offers still rank by likelihood.
        self._value_weight = np.array([1.0 + offer.value for offer in offers], dtype=np.float32)
        self._value = np.empty(len(offers), dtype=np.float32)
        self._buckets: dict[str, int] = {}
        self.counters: Counter[str] = Counter()  # odd inputs survived, for health

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def with_catalog(self, catalog: Catalog) -> DecisionEngine:
        """A new engine for ``catalog`` with this one's model, policy, clock and random source.

        Today's per-shopper counts are not carried (offer indices differ); the caller seeds them from the
        ledger. Per-display cooldowns start afresh.
        """
        return DecisionEngine(catalog, self._scorer, self._settings, self._clock, self._rng)

    @property
    def offer_ids(self) -> tuple[str, ...]:
        """Offer ids in candidate order (priority high first, then id)."""
        return self._ids

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
        self._features.fill(profile if personalized else None, ctx.audience, when)
        scores = self._score()  # one session run for every offer, eligible or not
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
        if holdout or n_eligible == 0:
            return self._record_fallback(
                ctx, at_wall, fallback, candidates, holdout=holdout, personalized=personalized
            )

        value = self._value
        np.multiply(scores, self._value_weight, out=value)
        value += verdict.penalty
        for index in verdict.blocked:
            value[index] = -np.inf
        greedy = int(value.argmax())
        epsilon = self._epsilon
        explored = epsilon > 0 and self._rng.random() < epsilon
        chosen = verdict.indices()[self._rng.randrange(n_eligible)] if explored else greedy
        # P(this offer | context) under the policy: the greedy arm's share plus its share of exploration.
        propensity = (1.0 - epsilon) * (chosen == greedy) + epsilon / n_eligible
        self._eligibility.record(chosen, shopper_id, ctx.display_id, when.day, now)
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
            model_version=self._version,
            propensity=propensity,
            explored=explored,
            holdout=False,
            personalized=personalized,
            candidates=candidates,
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
            model_version=self._version,
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
        *,
        holdout: bool,
        personalized: bool,
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
            model_version=self._version,
            propensity=1.0,
            explored=False,
            holdout=holdout,
            personalized=personalized,
            candidates=candidates,
        )
