"""The decision's logged context (edge/decide/logged.py, ``decisions.context``): it round-trips, rebuilds the
very features a decision used, keeps no shopper data it may not keep, and goes with an erasure."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.decide.basket import BasketRules
from edge.decide.catalog import CATEGORIES
from edge.decide.features import FeatureBuilder
from edge.decide.logged import (
    MAX_BASKET,
    ContextError,
    decode_context,
    encode_context,
    names_shopper,
    personal_parts,
    without_personal,
)
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import OnnxScorer, load_model
from edge.events import Decision, DecisionContext, Weather
from edge.ledger.store import Ledger
from edge.privacy.export import ExportContext, Retention, build_export
from tests.decide.strategies import json_scalars, json_values, profiles
from tests.measure.test_ope import MEASURED, PERSONAL, START, context, engine_order, policy
from tests.support.ope import BASKET_SKUS, RULES, catalog, logistic_model, weights

DAY = 86_400.0
RULE_SET = BasketRules.model_validate(RULES)
OFFERS = engine_order(catalog())
BUILDER = FeatureBuilder(OFFERS, "Europe/Berlin", RULE_SET)

weathers = st.none() | st.builds(
    Weather,
    temp_c=st.floats(allow_nan=True, allow_infinity=True),
    precipitation=st.booleans() | json_scalars,
    forecast_max_c=st.none() | st.floats(),
    observed_wall=st.floats(0, 2e9),
    source=st.sampled_from(["cloud", "sensor"]),
)
skus = st.sampled_from(BASKET_SKUS) | st.text(max_size=70) | st.text(min_size=250, max_size=300)
baskets = st.lists(skus, max_size=MAX_BASKET + 6).map(tuple)
trends = st.none() | st.dictionaries(st.sampled_from([*CATEGORIES, "cars"]), json_values, max_size=10)
audiences = json_scalars | st.integers(0, 70_000)


@settings(max_examples=400, deadline=None)
@given(
    profile=profiles,
    audience=audiences,
    weather=weathers,
    basket=baskets,
    shares=trends,
    use_profile=st.booleans(),
    at=st.floats(1.7e9, 1.9e9),
)
def test_a_logged_context_round_trips_and_rebuilds_the_same_features(
    profile: Any,
    audience: Any,
    weather: Weather | None,
    basket: tuple[str, ...],
    shares: dict[str, Any] | None,
    use_profile: bool,
    at: float,
) -> None:
    # As the engine decides: personalized only with a profile that is a mapping.
    personalized = use_profile and isinstance(profile, Mapping)
    ctx = DecisionContext("d1", "cafe", at, audience, "s1", profile, weather, basket, shares)
    blob = encode_context(ctx, personalized=personalized)
    logged = decode_context(blob, display_id="d1", zone="cafe", at_wall=at)
    assert logged.personalized is personalized
    # What the model saw: the engine passes neither profile nor basket without personalization.
    seen = replace(ctx, profile=profile if personalized else None, basket=basket if personalized else ())
    cut = personalized and (len(basket) > MAX_BASKET or any(len(sku.encode()) > 255 for sku in basket))
    assert logged.complete is not cut
    if not cut:
        assert np.array_equal(BUILDER.build(logged.context), BUILDER.build(seen))
        # The encoding is canonical: the decoded context encodes to the same bytes.
        assert encode_context(logged.context, personalized=logged.personalized) == blob
    # The shopper's part: only with personalization, and it can be taken off.
    assert names_shopper(blob) is personalized
    stripped = without_personal(blob)
    assert stripped is not None and not names_shopper(stripped)
    anonymous = decode_context(stripped, display_id="d1", zone="cafe", at_wall=at)
    assert anonymous.context.profile is None and anonymous.context.basket == ()
    assert np.array_equal(
        BUILDER.build(anonymous.context), BUILDER.build(replace(seen, profile=None, basket=()))
    )


def test_a_broken_blob_is_refused_with_a_reason() -> None:
    ctx = DecisionContext("d1", "cafe", START, 2, "s1", {"visits": 3}, None, ("mug-01",), {"coffee": 0.5})
    blob = encode_context(ctx, personalized=True)
    for broken, reason in (
        (blob[:-1], "truncated"),
        (blob + b"\x00", "trailing"),
        (b"\x07" + blob[1:], "version"),
        (b"", "truncated"),
    ):
        with pytest.raises(ContextError, match=reason):
            decode_context(broken, display_id="d1", zone="cafe", at_wall=START)
    assert without_personal(blob[:3]) is None  # unreadable: dropped, never kept with a shopper's data in it


def test_the_export_lists_what_the_context_says_about_the_shopper() -> None:
    profile = {"visits": 4, "affinity": {"coffee": 0.75, "home": True}}
    ctx = DecisionContext("d1", "cafe", START, 2, "s1", profile, None, ("mug-01",), None)
    assert personal_parts(encode_context(ctx, personalized=True)) == {
        "visits": 4,
        "affinity": {"coffee": 0.75, "home": None},  # a value the model read as 0 is shown as null
        "basket": ["mug-01"],
    }
    assert personal_parts(encode_context(ctx, personalized=False)) is None


async def test_the_ledger_keeps_contexts_that_rebuild_each_decisions_features(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    running: OnnxScorer = load_model(
        *logistic_model(folder, weights(affinity=1.5, basket_complement=1.0, temp_scaled=0.4), -1.0, "r-1")
    )
    clock = ManualClock(wall=START)
    engine = DecisionEngine(catalog(), running, policy(), clock, random.Random(11))
    rng = np.random.default_rng(11)
    decisions = []
    for i in range(300):
        clock.advance(float(rng.uniform(10, 200)))
        ctx = context(rng, clock, i, shopper=f"shopper-{i % 40}")
        decisions.append(engine.decide(ctx, PERSONAL if i % 3 else MEASURED))
    path = tmp_path / "ledger.db"
    async with Ledger(path, clock, outbox_max_bytes=None) as ledger:
        # Shoppers 0..29 keep their id (measurement); 30..39 do not: their rows keep the store's part only.
        await ledger.record_decisions([(d, int(str(d.shopper_id).split("-")[1]) < 30) for d in decisions])
        await ledger.forget_shopper("shopper-1")
    builder = FeatureBuilder(OFFERS, policy().tz, running.basket_rules)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT decision_id, display_id, zone, at_wall, offer_id, features, context, shopper_id "
            "FROM decisions ORDER BY decision_id"
        ).fetchall()
    assert len(rows) == len(decisions)
    compared = 0
    for decision_id, display_id, zone, at_wall, offer_id, features, blob, shopper_id in rows:
        if shopper_id is None:
            # Erased (shopper-1: nothing left) or not kept (the store's part only, nothing of theirs).
            assert blob is None or not names_shopper(blob), decision_id
            continue
        assert blob is not None
        logged = decode_context(blob, display_id=display_id, zone=zone, at_wall=at_wall)
        if offer_id is None:
            continue
        rebuilt = builder.build(logged.context)[engine.offer_ids.index(offer_id)]
        assert rebuilt.tobytes() == features, decision_id
        compared += 1
    assert compared > 100
    erased = [r for r in rows if r[0] in {d.decision_id for d in decisions if d.shopper_id == "shopper-1"}]
    assert erased and all(r[6] is None and r[5] is None for r in erased)
    not_kept = [r for r in rows if r[0] in {d.decision_id for d in decisions if d.shopper_id == "shopper-35"}]
    assert not_kept and all(r[6] is not None and not names_shopper(r[6]) for r in not_kept)
    personal_kept = [r for r in rows if r[7] is not None and names_shopper(r[6])]
    assert personal_kept  # personalised decisions of kept shoppers do log their profile and basket


async def test_a_shoppers_export_lists_what_their_decisions_logged(tmp_path: Path) -> None:
    clock = ManualClock(wall=START)
    profile = {"visits": 7, "affinity": {"sports": 0.5}}
    seen = DecisionContext("d1", "floor", START, 1, "s1", profile, None, ("shoe-run-42",), None)
    decision = Decision(
        decision_id="d-1",
        display_id="d1",
        zone="floor",
        at_wall=START,
        shopper_id="s1",
        offer_id="o-sports",
        template="offer",
        data={},
        model_version="r-1",
        propensity=0.8,
        explored=False,
        holdout=False,
        personalized=True,
        context=encode_context(seen, personalized=True),
    )
    async with Ledger(tmp_path / "ledger.db", clock, outbox_max_bytes=None) as ledger:
        await ledger.record_decision(decision, keep_shopper=True)
        rows = await ledger.privacy_rows("s1")
    export = build_export(rows, ExportContext("store-1", START, Retention(DAY, DAY, DAY, DAY)), None)
    assert export["decisions"][0]["context"] == {
        "visits": 7,
        "affinity": {"sports": 0.5},
        "basket": ["shoe-run-42"],
    }
