"""Eligibility through the engine's public decisions: zone, window (store time zone), consent, caps, cooldown."""

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import OnnxScorer
from edge.events import Decision
from tests.decide.conftest import NO_CONSENT, PERSONAL, EngineFactory, context, move_to, offer, wall


def reasons(decision: Decision) -> dict[str, str]:
    return {c.offer_id: c.reason for c in decision.candidates}


def eligible(decision: Decision) -> set[str]:
    return {c.offer_id for c in decision.candidates if c.eligible}


def test_zone(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine(
        [offer("cafe-only", zones=["cafe"]), offer("anywhere"), offer("two", zones=["a", "b"])]
    )
    at_cafe = engine.decide(context(clock, zone="cafe"), PERSONAL)
    at_door = engine.decide(context(clock, zone="entrance"), PERSONAL)
    assert eligible(at_cafe) == {"cafe-only", "anywhere"}
    assert eligible(at_door) == {"anywhere"}
    assert reasons(at_door) == {"cafe-only": "zone", "anywhere": "", "two": "zone"}


def test_window_is_evaluated_in_the_store_time_zone(make_engine: EngineFactory, clock: ManualClock) -> None:
    weekday_morning = {"windows": [{"days": [0, 1, 2, 3, 4], "start": "07:00", "end": "11:00"}]}
    move_to(clock, wall("Europe/Berlin", 2026, 1, 5, 7, 30))  # Monday 07:30 in Berlin = 06:30 UTC
    berlin = make_engine([offer("breakfast", **weekday_morning)], tz="Europe/Berlin")
    utc = make_engine([offer("breakfast", **weekday_morning)], tz="UTC")
    assert berlin.decide(context(clock), PERSONAL).offer_id == "breakfast"
    decision = utc.decide(context(clock), PERSONAL)
    assert decision.offer_id is None
    assert reasons(decision) == {"breakfast": "window"}


def test_window_days_and_end_is_exclusive(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine(
        [offer("w", windows=[{"days": [0], "start": "09:00", "end": "10:00"}])], tz="Europe/Berlin"
    )

    def at(day: int, hour: int, minute: int) -> str:
        move_to(clock, wall("Europe/Berlin", 2026, 1, day, hour, minute))
        return reasons(engine.decide(context(clock), PERSONAL))["w"]

    assert at(5, 8, 59) == "window"  # Monday
    assert at(5, 9, 0) == ""
    assert at(5, 9, 59) == ""
    assert at(5, 10, 0) == "window"  # the end is exclusive
    assert at(6, 9, 30) == "window"  # Tuesday


def test_overnight_window_runs_into_the_next_day(make_engine: EngineFactory, clock: ManualClock) -> None:
    late = {"windows": [{"days": [4], "start": "22:00", "end": "02:00"}]}  # Friday night
    engine = make_engine([offer("late", **late)], tz="America/New_York")

    def at(day: int, hour: int) -> str:
        move_to(clock, wall("America/New_York", 2026, 1, day, hour, 30))
        return reasons(engine.decide(context(clock), PERSONAL))["late"]

    assert at(9, 1) == "window"  # Friday 01:30 would belong to Thursday's window
    assert at(9, 23) == ""  # Friday 23:30
    assert at(10, 1) == ""  # Saturday 01:30, still Friday's window
    assert at(10, 2) == "window"
    assert at(10, 23) == "window"  # Saturday night: not listed


def reference_open(windows: list[dict[str, Any]], local: datetime) -> bool:
    minute, day = local.hour * 60 + local.minute, local.weekday()
    if not windows:
        return True
    for window in windows:
        start = int(window["start"][:2]) * 60 + int(window["start"][3:])
        end = int(window["end"][:2]) * 60 + int(window["end"][3:])
        days = window.get("days", range(7))
        if end > start and day in days and start <= minute < end:
            return True
        if end <= start and ((day in days and minute >= start) or ((day - 1) % 7 in days and minute < end)):
            return True
    return False


hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
windows = st.lists(
    st.fixed_dictionaries(
        {"start": hhmm, "end": hhmm}, optional={"days": st.lists(st.integers(0, 6), min_size=1, max_size=7)}
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    spec=windows,
    at=st.floats(min_value=1_700_000_000, max_value=1_900_000_000),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_windows_match_a_reference(
    scorer: OnnxScorer, spec: list[dict[str, Any]], at: float, tz: str
) -> None:
    clock = ManualClock(wall=at)
    engine = DecisionEngine(
        Catalog(offers=(offer("w", windows=spec),)),
        scorer,
        PolicySettings(epsilon=0, holdout_percent=0, tz=tz),
        clock,
        random.Random(1),
    )
    decision = engine.decide(context(clock), PERSONAL)
    expected = reference_open(spec, datetime.fromtimestamp(at, ZoneInfo(tz)))
    assert decision.candidates[0].eligible is expected
    assert decision.candidates[0].reason == ("" if expected else "window")


def test_consent_and_anonymous(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("mine", personal=True), offer("everyone")])
    with_consent = engine.decide(context(clock), PERSONAL)
    without = engine.decide(context(clock), NO_CONSENT)
    anonymous = engine.decide(context(clock, shopper=None), PERSONAL)
    no_profile = engine.decide(context(clock, profile={}), PERSONAL)
    assert eligible(with_consent) == {"mine", "everyone"}
    assert with_consent.personalized
    for decision in (without, anonymous):
        assert reasons(decision) == {"mine": "consent", "everyone": ""}
        assert not decision.personalized
    assert no_profile.personalized  # an empty profile is still a profile: personal offers allowed


def test_without_consent_the_profile_is_not_used(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("c", category="coffee"), offer("a", category="apparel")])
    loves_coffee = {"affinity": {"coffee": 1.0}, "visits": 50}
    without = engine.decide(context(clock, profile=loves_coffee), NO_CONSENT)
    anonymous = engine.decide(context(clock, shopper=None), NO_CONSENT)
    with_consent = engine.decide(context(clock, profile=loves_coffee), PERSONAL)
    assert [c.score for c in without.candidates] == [c.score for c in anonymous.candidates]
    assert [c.score for c in with_consent.candidates] != [c.score for c in anonymous.candidates]


def test_inactive_is_the_first_reason(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("off", active=False, zones=["elsewhere"], personal=True)])
    decision = engine.decide(context(clock, shopper=None), NO_CONSENT)
    assert reasons(decision) == {"off": "inactive"}


def test_daily_cap_resets_at_local_midnight(make_engine: EngineFactory) -> None:
    # 23:50 in New York is 04:50 UTC: a cap day kept in UTC would reset four hours too late (or early).
    clock = ManualClock(wall=wall("America/New_York", 2026, 3, 10, 23, 50))
    engine = make_engine([offer("o", daily_cap_per_shopper=2)], on=clock, tz="America/New_York")
    assert engine.decide(context(clock), PERSONAL).offer_id == "o"
    assert engine.decide(context(clock), PERSONAL).offer_id == "o"
    capped = engine.decide(context(clock), PERSONAL)
    assert capped.offer_id is None
    assert reasons(capped) == {"o": "cap"}
    assert engine.decide(context(clock, shopper="s2"), PERSONAL).offer_id == "o"  # caps are per shopper
    assert engine.decide(context(clock, shopper=None), PERSONAL).offer_id == "o"  # anonymous: no cap
    clock.advance(9 * 60)  # 23:59
    assert engine.decide(context(clock), PERSONAL).offer_id is None
    clock.advance(2 * 60)  # 00:01 the next local day
    assert engine.decide(context(clock), PERSONAL).offer_id == "o"
    assert engine.shopper_counts("s1") == {"o": 1}


def test_seed_counts_and_forget(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o", daily_cap_per_shopper=2), offer("p", daily_cap_per_shopper=5)])
    used = engine.seed_counts([("s1", "o", 2), ("s1", "p", 1), ("s1", "gone", 9)])
    assert used == 2
    assert engine.shopper_counts("s1") == {"o": 2, "p": 1}
    assert reasons(engine.decide(context(clock), PERSONAL))["o"] == "cap"
    assert engine.forget_shopper("s1")
    assert not engine.forget_shopper("s1")
    assert engine.shopper_counts("s1") == {}
    assert reasons(engine.decide(context(clock), PERSONAL))["o"] == ""


def test_display_cooldown(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o", display_cooldown_s=300.0), offer("z", value=0.0, category="home")])
    first = engine.decide(context(clock, display="d1"), PERSONAL)
    assert first.offer_id == "o"
    again = engine.decide(context(clock, display="d1"), PERSONAL)
    assert reasons(again)["o"] == "cooldown"
    assert again.offer_id == "z"
    assert reasons(engine.decide(context(clock, display="d2"), PERSONAL))["o"] == ""  # per display
    clock.advance(299.0)
    assert reasons(engine.decide(context(clock, display="d1"), PERSONAL))["o"] == "cooldown"
    clock.advance(1.0)
    assert engine.decide(context(clock, display="d1"), PERSONAL).offer_id == "o"


def test_cap_is_reported_before_cooldown(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o", daily_cap_per_shopper=1, display_cooldown_s=60.0)])
    assert engine.decide(context(clock), PERSONAL).offer_id == "o"
    assert reasons(engine.decide(context(clock), PERSONAL)) == {"o": "cap"}
    assert reasons(engine.decide(context(clock, shopper="s2"), PERSONAL)) == {"o": "cooldown"}


def test_one_offer_list_serves_many_situations(scorer: OnnxScorer) -> None:
    """Static rules are cached per situation: a second zone or time must not reuse the first one's verdict."""
    clock = ManualClock(wall=wall("UTC", 2026, 1, 5, 8, 0))
    morning = {"windows": [{"start": "06:00", "end": "12:00"}]}
    engine = DecisionEngine(
        Catalog(offers=(offer("m", zones=["cafe"], **morning), offer("x", value=0.0))),
        scorer,
        PolicySettings(epsilon=0, holdout_percent=0),
        clock,
        random.Random(1),
    )
    assert engine.decide(context(clock, zone="cafe"), PERSONAL).offer_id == "m"
    assert engine.decide(context(clock, zone="door"), PERSONAL).offer_id == "x"
    clock.advance(5 * 3600)
    assert engine.decide(context(clock, zone="cafe"), PERSONAL).offer_id == "x"
