"""A simulated month of one store, written into a real ledger file, with a planted effect (issue 16, "Proof").

The schema is the ledger's own (the file is migrated by ``Ledger``); the rows go in with SQL here, in a test
helper, because 20 months of a few thousand shoppers each must take seconds: the ledger's write API commits
op by op, and its own tests (tests/ledger/, tests/measure/test_attribution.py) cover that path. What the
report reads is the same either way: the tables and their columns.

Each shopper (with ``measurement`` consent) is assigned one of two offers at their first visit and sees it at
every visit, unless the real salted hash of the policy (``edge.decide.policy.is_holdout``) holds them out:
then the fallback is shown and the offer is their decision's counterfactual. Within ten days of the first
visit a shopper buys the offer's category with probability ``base`` (held out, or the null offer) or
``base + uplift`` (the planted offer, treated); the price is uniform in 10-30. Noise that must change
nothing: purchases of other categories, anonymous sales of the offers' SKUs, sales before the first visit,
and sales of held-out shoppers with a POS clock hours off.
"""

from __future__ import annotations

import json
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from edge.decide.catalog import Offer
from edge.decide.policy import is_holdout

DAY = 86_400.0
HOUR = 3_600.0
SALT = "proof-salt"
PLANTED = Offer(id="boost", title="Boost", category="sports", skus=("sock-1",), value=1.0)
NULL = Offer(id="null", title="Null", category="home", skus=("lamp-1",), value=1.0)
OFFERS = (PLANTED, NULL)
MEAN_PRICE = 20.0


@dataclass(frozen=True, slots=True)
class Month:
    shoppers: int = 3000
    holdout_percent: float = 20.0
    base: float = 0.25
    uplift: float = 0.12  # planted: treated shoppers of PLANTED convert this much more often
    days: int = 28


def simulate(path: Path, seed: int, start: float, month: Month = Month()) -> None:
    """Write one simulated month into the (migrated, closed) ledger file at ``path``."""
    rng = random.Random(seed)
    decisions: list[tuple[object, ...]] = []
    exposures: list[tuple[object, ...]] = []
    sales: list[tuple[object, ...]] = []
    lines: list[tuple[object, ...]] = []
    consents: list[tuple[object, ...]] = []

    def sale(
        shopper: str | None, at: float, items: list[tuple[str, str, float]], heard: float | None = None
    ) -> None:
        event_id = f"sale-{seed}-{len(sales)}"
        sales.append(
            (
                event_id,
                at,
                at if heard is None else heard,
                "lane-1",
                shopper,
                sum(p for *_, p in items),
                "EUR",
            )
        )
        lines.extend((event_id, n, sku, category, 1, price) for n, (sku, category, price) in enumerate(items))

    candidates = json.dumps(
        [{"offer_id": o.id, "eligible": True, "score": 0.5, "reason": ""} for o in OFFERS]
    )
    for i in range(month.shoppers):
        shopper = f"shopper-{seed}-{i}"
        consents.append((shopper, "measurement", 1, start, "app"))
        held = is_holdout(shopper, SALT, month.holdout_percent)
        offer = PLANTED if rng.random() < 0.5 else NULL
        first = start + rng.uniform(0, month.days - 10) * DAY
        visits = [first, *sorted(first + rng.uniform(0, 10) * DAY for _ in range(rng.randrange(3)))]
        for n, at in enumerate(visits):
            decision_id = f"d-{seed}-{i}-{n}"
            decisions.append(
                (
                    decision_id,
                    "screen-1",
                    "entrance",
                    at,
                    shopper,
                    None if held else offer.id,
                    "hero",
                    "m-1",
                    1.0 if held else 0.9,
                    0,
                    int(held),
                    0,
                    candidates,
                    offer.id if held else None,
                )
            )
            exposures.append((decision_id, "screen-1", 1, at + 1, at + 2, shopper))
        p = month.base + (month.uplift if offer is PLANTED and not held else 0.0)
        if rng.random() < p:
            sale(
                shopper,
                first + rng.uniform(HOUR, 10 * DAY),
                [(f"{offer.category}-item", offer.category, rng.uniform(10, 30))],
            )
        # noise: other categories; a purchase before the first visit; a POS clock hours off (held out only)
        if rng.random() < 0.3:
            sale(shopper, first + rng.uniform(0, 10) * DAY, [("bread", "grocery", 2.0)])
        if rng.random() < 0.2:
            sale(shopper, first - rng.uniform(HOUR, 5 * DAY), [(offer.skus[0], offer.category, 15.0)])
        if held and rng.random() < 0.2:
            at = first + rng.uniform(HOUR, 5 * DAY)
            sale(shopper, at, [(offer.skus[0], offer.category, 15.0)], heard=at + 3 * HOUR)
    for _ in range(month.shoppers // 2):
        offer = rng.choice(OFFERS)
        sale(None, start + rng.uniform(0, month.days) * DAY, [(offer.skus[0], offer.category, 15.0)])

    with closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO consents VALUES (?, ?, ?, ?, ?)", consents)
        db.executemany(
            "INSERT INTO decisions (decision_id, display_id, zone, at_wall, shopper_id, offer_id, template, "
            "model_version, propensity, explored, holdout, personalized, candidates, counterfactual_offer_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            decisions,
        )
        db.executemany(
            "INSERT INTO exposures (decision_id, display_id, version, shown_at_wall, acked_at_wall, shopper_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            exposures,
        )
        db.executemany(
            "INSERT INTO conversions (event_id, at_wall, received_wall, lane, shopper_id, total, currency) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            sales,
        )
        db.executemany(
            "INSERT INTO conversion_items (event_id, line, sku, category, qty, price) VALUES (?, ?, ?, ?, ?, ?)",
            lines,
        )
