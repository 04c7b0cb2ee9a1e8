"""Fixtures for the decide tests: the shipped model, small catalogs, an engine on a manual clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog, Offer
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import OnnxScorer, load_model
from edge.events import DecisionContext, Purpose

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "offers.onnx"
MANIFEST = REPO / "models" / "offers.json"
PERSONAL = frozenset({Purpose.PERSONALIZATION})
NO_CONSENT: frozenset[Purpose] = frozenset()


def offer(offer_id: str, **fields: Any) -> Offer:
    """An offer shown everywhere, always, with no cap or cooldown to speak of unless the test says so."""
    base: dict[str, Any] = {
        "id": offer_id,
        "title": offer_id,
        "category": "coffee",
        "value": 5.0,
        "daily_cap_per_shopper": 1_000_000,
        "display_cooldown_s": 0.0,
    }
    base.update(fields)
    return Offer.model_validate(base)


def wall(tz: str, *args: int) -> float:
    """Unix seconds of a local date-time in ``tz`` (year, month, day, hour, minute)."""
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


def move_to(clock: ManualClock, unix_seconds: float) -> None:
    """Advance a manual clock to an instant (clocks never go back)."""
    clock.advance(unix_seconds - clock.wall())


@pytest.fixture(scope="session")
def scorer() -> OnnxScorer:
    return load_model(MODEL, MANIFEST)


EngineFactory = Callable[..., DecisionEngine]


@pytest.fixture
def clock_start() -> float:
    """Early on a Monday in Berlin, whatever the test instant: these tests check time windows, caps and the
    model's hour and weekday features at instants they move ``clock`` to (docs/testing.md)."""
    return wall("Europe/Berlin", 2026, 1, 5, 6, 0)


@pytest.fixture
def make_engine(scorer: OnnxScorer, clock: ManualClock) -> EngineFactory:
    def make(
        offers: list[Offer], seed: int = 7, on: ManualClock | None = None, **settings: Any
    ) -> DecisionEngine:
        policy = PolicySettings(**{"epsilon": 0.0, "holdout_percent": 0.0, **settings})
        engine_clock = on if on is not None else clock
        return DecisionEngine(
            Catalog(offers=tuple(offers)), scorer, policy, engine_clock, random.Random(seed)
        )

    return make


def context(
    clock: ManualClock,
    *,
    zone: str = "cafe",
    display: str = "d1",
    shopper: str | None = "s1",
    profile: dict[str, Any] | None = None,
    audience: int = 1,
) -> DecisionContext:
    return DecisionContext(
        display_id=display,
        zone=zone,
        at_wall=clock.wall(),
        audience=audience,
        shopper_id=shopper,
        profile=profile if profile is not None else {"affinity": {"coffee": 0.8}, "visits": 3},
    )
