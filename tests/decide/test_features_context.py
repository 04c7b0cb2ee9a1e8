"""The decision context's columns: weather, basket complements (association rules) and local trends."""

import math
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decide.basket import EMPTY_RULES, BasketRules, parse_rules
from edge.decide.catalog import CATEGORIES
from edge.decide.features import UNIFORM_SHARE, FeatureBuilder, build_features
from edge.decide.manifest import FEATURE_NAMES, ModelError
from edge.events import DecisionContext, Weather
from tests.decide.conftest import offer, wall
from tests.decide.strategies import json_values

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
AT = wall("UTC", 2026, 7, 6, 14, 0)
SOCKS = offer("socks", category="apparel", skus=["APP-RUN-SOCKS"])
SHIRT = offer("shirt", category="apparel", skus=["APP-TSHIRT"])
APPAREL = offer("apparel", category="apparel")  # no SKUs: its category stands for it
DRINKS = offer("drinks", category="grocery", skus=["GRO-COLD-DRINK"])
COFFEE = offer("coffee", category="coffee")
OFFERS = [SOCKS, SHIRT, APPAREL, DRINKS, COFFEE]
RULES = BasketRules.model_validate(
    {
        "skus": {"SPT-RUN-SHOE": "sports", "APP-RUN-SOCKS": "apparel", "COF-BEANS": "coffee"},
        "rules": [
            {"antecedent": "sku:SPT-RUN-SHOE", "consequent": "sku:APP-RUN-SOCKS", "support": 0.04,
             "confidence": 0.6, "lift": 5.7},
            {"antecedent": "cat:sports", "consequent": "cat:apparel", "support": 0.05, "confidence": 0.3,
             "lift": 1.4},
            {"antecedent": "cat:sports", "consequent": "sku:APP-RUN-SOCKS", "support": 0.04,
             "confidence": 0.2, "lift": 3.0},
            {"antecedent": "sku:COF-BEANS", "consequent": "cat:grocery", "support": 0.03, "confidence": 0.4,
             "lift": 2.0},
            {"antecedent": "cat:grocery", "consequent": "cat:coffee", "support": 0.03, "confidence": 0.25,
             "lift": 1.5},
        ],
    }
)  # fmt: skip
HOT = Weather(temp_c=31.0, precipitation=False, forecast_max_c=33.0, observed_wall=AT, source="cloud")


def ctx(
    weather: Weather | None = None, basket: tuple[str, ...] = (), trends: Any = None, profile: Any = None
) -> DecisionContext:
    return DecisionContext("d", "cafe", AT, 2, "s", profile, weather, basket, trends)


def column(matrix: np.ndarray, name: str) -> list[float]:
    return [round(float(v), 6) for v in matrix[:, COL[name]]]


# ----- weather -----
def test_weather_columns() -> None:
    rainy = Weather(temp_c=7.5, precipitation=True, forecast_max_c=None, observed_wall=AT, source="sensor")
    hot = build_features(OFFERS, ctx(HOT))
    wet = build_features(OFFERS, ctx(rainy))
    assert set(column(hot, "weather_known")) == {1.0}
    assert set(column(hot, "temp_scaled")) == {1.6}  # (31 - 15) / 10
    assert set(column(hot, "precipitation")) == {0.0}
    assert set(column(wet, "temp_scaled")) == {-0.75}
    assert set(column(wet, "precipitation")) == {1.0}


@pytest.mark.parametrize(("temp", "scaled"), [(80.0, 2.5), (-60.0, -3.5), (40, 2.5)])
def test_temperature_is_clamped(temp: float, scaled: float) -> None:
    weather = Weather(temp_c=temp, precipitation=False, forecast_max_c=None, observed_wall=AT, source="cloud")
    assert set(column(build_features(OFFERS, ctx(weather)), "temp_scaled")) == {scaled}


@pytest.mark.parametrize("temp", [math.nan, math.inf, -math.inf, "31", None, True])
def test_unusable_temperature_is_unknown_weather(temp: Any) -> None:
    weather = Weather(temp_c=temp, precipitation=True, forecast_max_c=None, observed_wall=AT, source="cloud")
    matrix = build_features(OFFERS, ctx(weather))
    for name in ("weather_known", "temp_scaled", "precipitation"):
        assert set(column(matrix, name)) == {0.0}, name


def test_unknown_weather_never_keeps_the_last_value() -> None:
    builder = FeatureBuilder(OFFERS)
    builder.build(ctx(HOT))
    after = builder.build(ctx(None))
    for name in ("weather_known", "temp_scaled", "precipitation"):
        assert set(column(after, name)) == {0.0}, name


# ----- trends -----
def test_trend_share_is_the_offers_category_share() -> None:
    trends = {"apparel": 0.5, "grocery": 0.3, "coffee": 0.2}
    matrix = build_features(OFFERS, ctx(trends=trends))
    assert column(matrix, "trend_share") == [0.5, 0.5, 0.5, 0.3, 0.2]


def test_no_trends_is_the_uniform_share() -> None:
    for trends in (None, {}):
        matrix = build_features(OFFERS, ctx(trends=trends))
        assert set(column(matrix, "trend_share")) == {round(UNIFORM_SHARE, 6)}


def test_odd_shares_are_clamped_or_zero_and_unnamed_categories_sold_nothing() -> None:
    trends = {"apparel": 7.0, "grocery": math.nan, "coffee": "0.4", "cars": 0.9}
    matrix = build_features(OFFERS, ctx(trends=trends))
    assert column(matrix, "trend_share") == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert set(
        column(build_features([offer("k", category="kids")], ctx(trends={"home": 1.0})), "trend_share")
    ) == {0.0}


def test_trends_follow_each_decision() -> None:
    builder = FeatureBuilder(OFFERS)
    assert column(builder.build(ctx(trends={"apparel": 0.6})), "trend_share")[0] == 0.6
    assert column(builder.build(ctx(trends={"apparel": 0.1})), "trend_share")[0] == 0.1
    assert column(builder.build(ctx(trends=None)), "trend_share")[0] == round(UNIFORM_SHARE, 6)


# ----- basket -----
def test_running_shoes_make_socks_complementary() -> None:
    matrix = build_features(OFFERS, ctx(basket=("SPT-RUN-SHOE",)), rules=RULES)
    # socks: the SKU rule (0.6) beats the category rule to the socks SKU (0.2); the shirt is an apparel
    # offer with SKUs no rule names, so its category counts (0.3); likewise the SKU-less apparel offer.
    assert column(matrix, "basket_complement") == [0.6, 0.3, 0.3, 0.0, 0.0]


def test_a_sku_the_rules_do_not_know_maps_through_the_catalog_offers() -> None:
    # No rule names GRO-COLD-DRINK, and the rules' SKU table does not know it: the drinks offer's category does.
    matrix = build_features(OFFERS, ctx(basket=("GRO-COLD-DRINK",)), rules=RULES)
    assert column(matrix, "basket_complement") == [0.0, 0.0, 0.0, 0.0, 0.25]


def test_the_best_rule_of_several_basket_items_counts() -> None:
    basket = ("COF-BEANS", "SPT-RUN-SHOE", "COF-BEANS")
    matrix = build_features(OFFERS, ctx(basket=basket), rules=RULES)
    assert column(matrix, "basket_complement") == [0.6, 0.3, 0.3, 0.4, 0.0]


def test_unknown_skus_and_no_rules_contribute_nothing() -> None:
    for basket, rules in ((("NOT-A-SKU", "", "x" * 500), RULES), (("SPT-RUN-SHOE",), EMPTY_RULES)):
        matrix = build_features(OFFERS, ctx(basket=basket), rules=rules)
        assert set(column(matrix, "basket_complement")) == {0.0}


def test_an_empty_basket_clears_the_last_one() -> None:
    builder = FeatureBuilder(OFFERS, rules=RULES)
    assert column(builder.build(ctx(basket=("SPT-RUN-SHOE",))), "basket_complement")[0] == 0.6
    assert set(column(builder.build(ctx(basket=())), "basket_complement")) == {0.0}
    builder.build(ctx(basket=("SPT-RUN-SHOE",)))
    assert set(column(builder.build(ctx(basket=("NOT-A-SKU",))), "basket_complement")) == {0.0}


def test_fill_uses_the_complements_it_is_given() -> None:
    builder = FeatureBuilder(OFFERS)  # no rules of its own
    when = builder.resolver.resolve(AT)
    compiled = builder.compile(RULES)
    matrix = builder.fill(None, 1, when, None, ("SPT-RUN-SHOE",), None, compiled)
    assert column(matrix, "basket_complement")[0] == 0.6
    assert column(builder.fill(None, 1, when, None, ("SPT-RUN-SHOE",)), "basket_complement")[0] == 0.0


def test_rules_are_parsed_strictly() -> None:
    assert parse_rules(RULES.model_dump_json(), "m") == RULES
    with pytest.raises(ModelError, match="carries no basket rules"):
        parse_rules(None, "m.onnx")
    with pytest.raises(ModelError, match="invalid basket rules"):
        parse_rules('{"rules": [{"antecedent": "cat:cars", "consequent": "cat:home", "support": 0.1, '
                    '"confidence": 0.1, "lift": 2}]}', "m.onnx")  # fmt: skip
    with pytest.raises(ModelError, match="invalid basket rules"):
        parse_rules('{"skus": {"A": "cars"}}', "m.onnx")
    with pytest.raises(ModelError, match="more than"):
        parse_rules(" " * 2_000_000, "m.onnx")


# ----- never raises -----
weathers = json_values | st.builds(
    Weather,
    temp_c=json_values,
    precipitation=json_values,
    forecast_max_c=json_values,
    observed_wall=st.just(AT),
    source=st.just("cloud"),
)
baskets = st.lists(st.sampled_from(["SPT-RUN-SHOE", "COF-BEANS", "", "?"]) | st.text(max_size=6), max_size=80)
trend_maps = st.none() | st.dictionaries(st.sampled_from([*CATEGORIES, "cars", ""]), json_values, max_size=10)


@settings(max_examples=300, deadline=None)
@given(weather=weathers, basket=baskets, trends=trend_maps | json_values)
def test_never_raises_and_stays_in_range(weather: Any, basket: list[str], trends: Any) -> None:
    builder = FeatureBuilder(OFFERS, rules=RULES)
    matrix = builder.build(ctx(weather, tuple(basket), trends))
    assert np.isfinite(matrix).all()
    for name in ("weather_known", "precipitation", "basket_complement", "trend_share"):
        assert ((matrix[:, COL[name]] >= 0) & (matrix[:, COL[name]] <= 1)).all(), name
    assert (np.abs(matrix[:, COL["temp_scaled"]]) <= 3.5).all()


def test_trends_are_read_again_unless_the_same_read_only_mapping() -> None:
    builder = FeatureBuilder(OFFERS)
    mutable = {"apparel": 0.6}
    assert column(builder.build(ctx(trends=mutable)), "trend_share")[0] == 0.6
    mutable["apparel"] = 0.2  # a plain dict changed in place: read again
    assert column(builder.build(ctx(trends=mutable)), "trend_share")[0] == 0.2
    frozen = MappingProxyType({"apparel": 0.4})
    assert column(builder.build(ctx(trends=frozen)), "trend_share")[0] == 0.4
    assert column(builder.build(ctx(trends=MappingProxyType({"apparel": 0.3}))), "trend_share")[0] == 0.3
    assert column(builder.build(ctx(trends=frozen)), "trend_share")[0] == 0.4
