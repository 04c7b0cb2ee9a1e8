"""Fixtures for the ledger tests: a path in a not-yet-existing folder, a ledger on ``clock``, decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock
from edge.events import Candidates, Decision
from edge.ledger import Ledger

MakeDecision = Callable[..., Decision]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A missing parent folder: the ledger must create it.
    return tmp_path / "state" / "ledger.db"


@pytest.fixture
async def ledger(db_path: Path, clock: ManualClock) -> AsyncIterator[Ledger]:
    async with Ledger(db_path, clock) as opened:
        yield opened


@pytest.fixture
def make_decision(clock: ManualClock) -> MakeDecision:
    def make(decision_id: str = "d1", **overrides: Any) -> Decision:
        fields: dict[str, Any] = {
            "decision_id": decision_id,
            "display_id": "screen-1",
            "zone": "entrance",
            "at_wall": clock.wall(),
            "shopper_id": "shopper-1",
            "offer_id": "offer-a",
            "template": "hero",
            "data": {"headline": "10% off"},
            "model_version": "m-1",
            "propensity": 0.25,
            "explored": True,
            "holdout": False,
            "personalized": True,
            "candidates": Candidates(
                ("offer-a", "offer-b"), (True, False), (1.5, float("-inf")), ("", "zone")
            ),
        }
        fields.update(overrides)
        return Decision(**fields)

    return make
