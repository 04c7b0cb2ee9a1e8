import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decide.catalog import CATEGORIES
from edge.decide.features import FeatureBuilder, LocalTimeResolver, build_features
from edge.decide.manifest import FEATURE_NAMES
from edge.events import DecisionContext
from tests.decide.conftest import offer, wall
from tests.decide.strategies import json_scalars, profiles

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
OFFERS = [
    offer(f"o{i}", category=category, value=float(i), discount=i / 20)
    for i, category in enumerate(CATEGORIES * 2)
]


def ctx(profile: Any = None, audience: Any = 2, at: float | None = None) -> DecisionContext:
    moment = at if at is not None else wall("UTC", 2026, 1, 5, 8, 30)
    return DecisionContext("d", "cafe", moment, audience, "s", profile)


def test_names_are_fixed_and_one_hot_follows_categories() -> None:
    assert FEATURE_NAMES[:14] == (
        "hour_sin",
        "hour_cos",
        "weekend",
        "audience_log",
        "personalized",
        "visits_log",
        "weather_known",
        "temp_scaled",
        "precipitation",
        "affinity",
        "basket_complement",
        "trend_share",
        "offer_value_log",
        "offer_discount",
    )
    assert FEATURE_NAMES[14:] == tuple(f"cat_{c}" for c in CATEGORIES)


def test_values_for_a_known_context() -> None:
    profile = {"affinity": {"coffee": 0.9, "apparel": 0.2}, "visits": 12, "segment": "regular"}
    matrix = build_features(OFFERS, ctx(profile, audience=3))
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(OFFERS), len(FEATURE_NAMES))
    hour = 8.5
    assert np.allclose(matrix[:, COL["hour_sin"]], math.sin(2 * math.pi * hour / 24))
    assert np.allclose(matrix[:, COL["hour_cos"]], math.cos(2 * math.pi * hour / 24))
    assert np.all(matrix[:, COL["weekend"]] == 0)  # a Monday
    assert np.allclose(matrix[:, COL["audience_log"]], math.log1p(3))
    assert np.all(matrix[:, COL["personalized"]] == 1)
    assert np.allclose(matrix[:, COL["visits_log"]], math.log1p(12))
    for row, item in enumerate(OFFERS):
        expected = {"coffee": 0.9, "apparel": 0.2}.get(item.category, 0.0)
        assert matrix[row, COL["affinity"]] == np.float32(expected)
        assert matrix[row, COL["offer_value_log"]] == np.float32(math.log1p(item.value))
        assert matrix[row, COL["offer_discount"]] == np.float32(item.discount)
        one_hot = matrix[row, COL["cat_apparel"] :]
        assert one_hot.sum() == 1
        assert one_hot[CATEGORIES.index(item.category)] == 1


def test_context_only_clears_the_profile_columns() -> None:
    builder = FeatureBuilder(OFFERS)
    personal = builder.build(ctx({"affinity": dict.fromkeys(CATEGORIES, 1.0), "visits": 40}))
    anonymous = builder.build(ctx(None))
    assert np.all(personal[:, COL["affinity"]] == 1)
    for name in ("personalized", "visits_log", "affinity"):
        assert np.all(anonymous[:, COL[name]] == 0), name
    profile_columns = [COL["personalized"], COL["visits_log"], COL["affinity"]]
    assert np.array_equal(
        np.delete(personal, profile_columns, axis=1), np.delete(anonymous, profile_columns, axis=1)
    )


def test_local_time_drives_hour_and_weekend() -> None:
    saturday_evening = wall("Asia/Tokyo", 2026, 1, 10, 18, 0)  # Saturday 09:00 UTC
    tokyo = FeatureBuilder(OFFERS, "Asia/Tokyo").build(ctx(at=saturday_evening))
    utc = FeatureBuilder(OFFERS, "UTC").build(ctx(at=saturday_evening))
    assert tokyo[0, COL["weekend"]] == 1
    assert np.isclose(tokyo[0, COL["hour_sin"]], math.sin(2 * math.pi * 18 / 24), atol=1e-6)
    assert np.isclose(utc[0, COL["hour_sin"]], math.sin(2 * math.pi * 9 / 24), atol=1e-6)


def test_builds_are_independent_copies() -> None:
    builder = FeatureBuilder(OFFERS)
    first = builder.build(ctx({"affinity": {"coffee": 1.0}}))
    builder.build(ctx(None, audience=50))
    assert first[:, COL["affinity"]].max() == 1
    assert first[0, COL["audience_log"]] == np.float32(math.log1p(2))


@settings(max_examples=300, deadline=None)
@given(profile=profiles, audience=json_scalars)
def test_never_raises_and_stays_finite(profile: Any, audience: Any) -> None:
    matrix = FeatureBuilder(OFFERS).build(ctx(profile, audience=audience))
    assert matrix.shape == (len(OFFERS), len(FEATURE_NAMES))
    assert matrix.dtype == np.float32
    assert np.isfinite(matrix).all()
    assert (matrix[:, COL["affinity"]] >= 0).all()
    assert (matrix[:, COL["affinity"]] <= 1).all()


@settings(max_examples=200, deadline=None)
@given(
    at=st.floats(min_value=0, max_value=4_102_444_800),  # 1970..2100
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
)
def test_resolver_matches_datetime(at: float, tz: str) -> None:
    resolver = LocalTimeResolver(tz)
    resolver.resolve(at - 30.0)  # a neighbouring minute cached first must not leak into this one
    local = resolver.resolve(at)
    expected = datetime.fromtimestamp(at, tz=ZoneInfo(tz))
    assert (local.weekday, local.minute, local.day) == (
        expected.weekday(),
        expected.hour * 60 + expected.minute,
        expected.toordinal(),
    )
