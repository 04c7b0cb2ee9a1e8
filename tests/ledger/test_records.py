"""Decisions, exposures, shopper unlinking, retention and the read side."""

from __future__ import annotations

import pytest

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger

DAY = 86_400.0


async def test_decision_round_trip(ledger: Ledger, make_decision, clock: ManualClock) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    assert await ledger.decision("d1") == {
        "decision_id": "d1",
        "display_id": "screen-1",
        "zone": "entrance",
        "at_wall": clock.wall(),
        "shopper_id": "shopper-1",
        "offer_id": "offer-a",
        "template": "hero",
        "model_version": "m-1",
        "propensity": 0.25,
        "explored": True,
        "holdout": False,
        "counterfactual_offer_id": None,
        "personalized": True,
        "candidates": [
            {"offer_id": "offer-a", "eligible": True, "score": 1.5, "reason": ""},
            {"offer_id": "offer-b", "eligible": False, "score": None, "reason": "zone"},
        ],
        "features": None,
        "context": None,
    }
    assert await ledger.decision("nope") is None


async def test_a_decisions_features_are_kept_only_with_its_shopper_and_go_with_an_erasure(
    ledger: Ledger, make_decision
) -> None:
    row = bytes(range(68))
    await ledger.record_decision(make_decision("kept", features=row), keep_shopper=True)
    await ledger.record_decision(make_decision("anon", features=row), keep_shopper=False)
    assert (await ledger.decision("kept") or {})["features"] == row
    assert (await ledger.decision("anon") or {})["features"] is None
    await ledger.forget_shopper("shopper-1")
    assert (await ledger.decision("kept") or {})["features"] is None


async def test_keep_shopper_false_stores_null_and_exposure_follows(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("kept"), keep_shopper=True)
    await ledger.record_decision(make_decision("anon"), keep_shopper=False)
    record = await ledger.decision("anon")
    assert record is not None
    assert record["shopper_id"] is None
    for decision_id in ("kept", "anon"):
        assert await ledger.record_exposure(
            decision_id=decision_id, display_id="screen-1", version=3, shown_at_wall=1.0, acked_at_wall=2.0
        )
    by_decision = {row["decision_id"]: row for row in await ledger.exposures()}
    assert by_decision["kept"]["shopper_id"] == "shopper-1"
    assert by_decision["anon"]["shopper_id"] is None
    assert by_decision["kept"] == {
        "decision_id": "kept",
        "display_id": "screen-1",
        "version": 3,
        "shown_at_wall": 1.0,
        "acked_at_wall": 2.0,
        "shopper_id": "shopper-1",
    }


async def test_exposure_is_idempotent_and_unknown_decision_is_refused(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    args = {"decision_id": "d1", "display_id": "screen-1", "version": 1, "shown_at_wall": 5.0}
    assert await ledger.record_exposure(**args, acked_at_wall=6.0) is True
    assert await ledger.record_exposure(**args, acked_at_wall=7.0) is False
    # Same decision on another display is another exposure.
    assert await ledger.record_exposure(**{**args, "display_id": "screen-2"}, acked_at_wall=6.0) is True
    assert await ledger.record_exposure(**{**args, "decision_id": "ghost"}, acked_at_wall=6.0) is False
    stats = ledger.stats()
    assert stats.exposure_duplicates == 1
    assert stats.exposure_unknown_decision == 1
    assert (await ledger.table_counts())["exposures"] == 2
    rows = await ledger.exposures(limit=1)
    assert [(r["decision_id"], r["display_id"]) for r in rows] == [("d1", "screen-2")]


async def test_duplicate_decision_is_kept_once_and_counted(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d1", offer_id="other"), keep_shopper=True)
    record = await ledger.decision("d1")
    assert record is not None
    assert record["offer_id"] == "offer-a"
    assert ledger.stats().decision_duplicates == 1


async def test_offer_counts_since(ledger: Ledger, make_decision, clock: ManualClock) -> None:
    start = clock.wall()
    await ledger.record_decision(make_decision("old", at_wall=start - 100), keep_shopper=True)
    await ledger.record_decision(make_decision("a1"), keep_shopper=True)
    await ledger.record_decision(make_decision("a2"), keep_shopper=True)
    await ledger.record_decision(make_decision("b1", offer_id="offer-b"), keep_shopper=True)
    await ledger.record_decision(make_decision("x1", shopper_id="s2"), keep_shopper=True)
    await ledger.record_decision(make_decision("fallback", offer_id=None), keep_shopper=True)
    await ledger.record_decision(make_decision("anon"), keep_shopper=False)
    assert await ledger.offer_counts_since(start) == [
        ("s2", "offer-a", 1),
        ("shopper-1", "offer-a", 2),
        ("shopper-1", "offer-b", 1),
    ]


async def test_forget_shopper(ledger: Ledger, make_decision) -> None:
    await ledger.record_decision(make_decision("d1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d2", shopper_id="other"), keep_shopper=True)
    await ledger.record_exposure(
        decision_id="d1", display_id="s", version=1, shown_at_wall=1.0, acked_at_wall=1.0
    )
    for purpose in (Purpose.PERSONALIZATION, Purpose.MEASUREMENT):
        await ledger.set_consent(ConsentRow("shopper-1", purpose, True, 1.0, "app"))
    await ledger.set_consent(ConsentRow("other", Purpose.MEASUREMENT, True, 1.0, "app"))

    await ledger.forget_shopper("shopper-1")

    d1 = await ledger.decision("d1")
    assert d1 is not None
    assert d1["shopper_id"] is None
    assert [row["shopper_id"] for row in await ledger.exposures()] == [None]
    assert [(c.shopper_id, c.purpose) for c in await ledger.load_consents()] == [
        ("other", Purpose.MEASUREMENT)
    ]
    assert await ledger.offer_counts_since(0.0) == [("other", "offer-a", 1)]
    # Only the link is removed; the anonymous records stay.
    assert (await ledger.table_counts())["decisions"] == 2


async def test_purge_applies_retention(db_path, clock: ManualClock, make_decision) -> None:
    async with Ledger(db_path, clock, retention_days=7) as ledger:
        now = clock.wall()
        await ledger.record_decision(make_decision("old", at_wall=now - 8 * DAY), keep_shopper=True)
        await ledger.record_decision(make_decision("new", at_wall=now - 6 * DAY), keep_shopper=True)
        for decision_id in ("old", "new"):
            await ledger.record_exposure(
                decision_id=decision_id, display_id="s", version=1, shown_at_wall=now, acked_at_wall=now
            )
        await ledger.claim_jti("expired", now - 1)
        await ledger.claim_jti("live", now + 60)

        deleted = (await ledger.purge(now)).removed

        assert deleted == {
            "jti": 1,
            "decisions": 1,
            "exposures": 1,
            "device_settings": 0,
            "staff_interactions": 0,
            "privacy_audit": 0,
            "dead_letters": 0,
            "collected_orders": 0,
            "conversions": 0,
            "campaign_exposures": 0,
            "profiles": 0,
            "shopper_seen": 0,
            "corrupt_files": 0,
        }
        assert await ledger.decision("old") is None
        assert await ledger.decision("new") is not None
        assert await ledger.table_counts() == {"decisions": 1, "exposures": 1, "consents": 0, "jti": 1}
        assert set((await ledger.purge(now)).removed.values()) == {0}


async def test_device_settings_keep_their_shoppers_until_erasure_or_retention(
    db_path, clock: ManualClock
) -> None:
    async with Ledger(db_path, clock, retention_days=7) as ledger:
        start = clock.wall()
        await ledger.record_device_setting("fitting-1", "people", {"temperature": 22.5}, ["a", "b"])
        clock.advance(DAY)
        await ledger.record_device_setting("fitting-1", "default", {"temperature": 21.0}, [])
        assert await ledger.device_settings() == [
            ("fitting-1", start, "people", '{"temperature":22.5}', ["a", "b"]),
            ("fitting-1", start + DAY, "default", '{"temperature":21.0}', []),
        ]
        await ledger.forget_shopper("a")
        assert (await ledger.device_settings())[0][4] == ["b"]  # the setting stays, unlinked from a
        clock.advance(6.5 * DAY)
        assert (await ledger.purge(clock.wall())).removed["device_settings"] == 1
        assert [row[2] for row in await ledger.device_settings()] == ["default"]


def test_constructor_rejects_nonsense(db_path, clock) -> None:
    with pytest.raises(ValueError, match="batch_max"):
        Ledger(db_path, clock, batch_max=0)
    with pytest.raises(ValueError, match="retention_days"):
        Ledger(db_path, clock, retention_days=0)


async def test_staff_answers_are_stored_once_unlinked_by_erasure_and_purged(
    db_path, clock: ManualClock
) -> None:
    async with Ledger(db_path, clock, retention_days=7) as ledger:
        assert await ledger.record_staff_interaction("n1", "assisting", "fitting", "rooms", "p-a")
        assert not await ledger.record_staff_interaction("n1", "assisting", "fitting", "rooms", "p-a")
        assert await ledger.record_staff_interaction("n1", "dismissed", "fitting", "rooms", None)
        events = await ledger.outbox.peek(10, 1_000_000)
        assert [(e.kind, e.shopper_id) for e in events] == [
            ("staff_interaction", "p-a"),
            ("staff_interaction", None),
        ]
        await ledger.forget_shopper("p-a")
        assert [row[5] for row in await ledger.staff_interactions()] == [None, None]
        assert [row[1] for row in await ledger.staff_interactions()] == ["assisting", "dismissed"]
        clock.advance(8 * DAY)
        assert (await ledger.purge(clock.wall())).removed["staff_interactions"] == 2
        assert await ledger.staff_interactions() == []
