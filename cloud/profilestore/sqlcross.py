"""Online and offline together, in SQL (issue 16): sales of both channels, the touches a sale may be attributed
to, and the cross-channel report as one aggregation (docs/profile-store.md, "Online and offline together").

Sales: online orders the web shop posts, and store sales (``conversion`` events the gateways push). Touches:
offers shown in a store (``exposure`` events, whose ``decision`` event names the offer; the offer's SKUs and
category come from the cloud's own catalog as it was when the exposure arrived) and online campaigns a
shopper saw (posted). A sale is attributed to a touch of the same shopper at most the window before it when
one of its lines has a SKU the touch promoted or the touch's category.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final, get_args

from profilestore import sqlscope
from profilestore.const import MAX_AMOUNT, MAX_SALE_LINES, MAX_SKU_CHARS
from profilestore.jsonbody import dumps
from profilestore.sqldb import Connection, Database, Lane, one
from profilestore.storage import (
    CampaignExposureRecord,
    CrossRow,
    CrossTotals,
    EventRecord,
    PostOutcome,
    SaleLine,
    SaleRecord,
)
from storecontract.offers import Category

ONLINE: Final = "online"
STORE: Final = "store"
OFFER: Final = "offer"
CAMPAIGN: Final = "campaign"
CATEGORIES: Final = frozenset(get_args(Category))
# Why a pushed event was of no use to the join (docs/profile-store.md): counted in the report.
EXPOSURE_WITHOUT_DECISION: Final = "exposure_without_decision"
OFFER_NOT_IN_CATALOG: Final = "offer_not_in_catalog"
BAD_CONVERSION: Final = "bad_conversion"
SALE_WITHOUT_ITEMS: Final = "sale_without_items"
_DECISION_ID: Final = re.compile(r"^[0-9a-f]{32}$")


def sku_key(sku: str) -> str:
    return f"sku:{sku}"


def category_key(category: str) -> str:
    return f"category:{category}"


def touch_keys(skus: Iterable[str], category: str | None) -> list[str]:
    """What a touch promoted, as match keys (a sale line matches one by its SKU or its category)."""
    keys = dict.fromkeys(sku_key(sku) for sku in skus)
    if category is not None:
        keys[category_key(category)] = None
    return list(keys)


async def _erased_at(conn: Connection, shoppers: Sequence[str]) -> dict[str, int]:
    if not shoppers:
        return {}
    rows = await conn.fetch_any(
        "SELECT shopper_id, erased_us FROM erasures WHERE shopper_id {ANY}", sorted(set(shoppers)), "text"
    )
    return {str(shopper): int(erased_us) for shopper, erased_us in rows}


def _owner(shopper: str | None, at_us: int, erased: dict[str, int]) -> str | None:
    # Dated at or before the shopper's erasure: kept, but no longer theirs (as pushed events).
    if shopper is not None and shopper in erased and at_us <= erased[shopper]:
        return None
    return shopper


async def _insert_sale(conn: Connection, sale: SaleRecord, shopper: str | None, now_us: int) -> bool:
    """The sale and its lines; False (nothing written) if the id was stored before."""
    inserted = await conn.execute(
        "INSERT INTO sales (channel, sale_id, store_id, shopper_id, at_us, total, currency, received_us)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (channel, sale_id) DO NOTHING",
        sale.channel,
        sale.sale_id,
        sale.store_id,
        shopper,
        sale.at_us,
        sale.total,
        sale.currency,
        now_us,
    )
    if not inserted:
        return False
    await conn.executemany(
        "INSERT INTO sale_lines (channel, sale_id, line, sku, category, qty, price)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (sale.channel, sale.sale_id, line, item.sku, item.category, item.qty, item.price)
            for line, item in enumerate(sale.lines)
        ],
    )
    return True


async def _insert_touch(
    conn: Connection,
    channel: str,
    touch_id: str,
    touchpoint: str,
    ref_id: str,
    store_id: str | None,
    shopper_id: str,
    at_us: int,
    keys: Sequence[str],
) -> None:
    inserted = await conn.execute(
        "INSERT INTO touches (channel, touch_id, touchpoint, ref_id, store_id, shopper_id, at_us)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, touch_id) DO NOTHING",
        channel,
        touch_id,
        touchpoint,
        ref_id,
        store_id,
        shopper_id,
        at_us,
    )
    if inserted:
        await conn.executemany(
            "INSERT INTO touch_keys (channel, touch_id, key) VALUES ($1, $2, $3)",
            [(channel, touch_id, key) for key in keys],
        )


async def post_sale(db: Database, sale: SaleRecord, now_us: int) -> PostOutcome:
    # The events' lane, as an erasure takes it: a sale being written now cannot keep an erased shopper's id.
    async with db.writing(Lane.EVENTS) as conn:
        erased = await _erased_at(conn, [sale.shopper_id] if sale.shopper_id else [])
        shopper = _owner(sale.shopper_id, sale.at_us, erased)
        stored = await _insert_sale(conn, sale, shopper, now_us)
    return PostOutcome(
        duplicate=not stored, anonymous=stored and shopper is None and sale.shopper_id is not None
    )


async def post_campaign_exposure(db: Database, exposure: CampaignExposureRecord, now_us: int) -> PostOutcome:
    async with db.writing(Lane.CHANGES, Lane.EVENTS) as conn:
        erased = await _erased_at(conn, [exposure.shopper_id])
        shopper = _owner(exposure.shopper_id, exposure.at_us, erased)
        inserted = await conn.execute(
            "INSERT INTO campaign_exposures (exposure_id, shopper_id, campaign_id, at_us, skus, category,"
            " received_us) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (exposure_id) DO NOTHING",
            exposure.exposure_id,
            shopper,
            exposure.campaign_id,
            exposure.at_us,
            dumps(list(exposure.skus)),
            exposure.category,
            now_us,
        )
        if not inserted:
            return PostOutcome(duplicate=True)
        if shopper is None:
            return PostOutcome(duplicate=False, anonymous=True)
        keys = touch_keys(exposure.skus, exposure.category)
        await _insert_touch(
            conn,
            ONLINE,
            exposure.exposure_id,
            CAMPAIGN,
            exposure.campaign_id,
            None,
            shopper,
            exposure.at_us,
            keys,
        )
        stores = await sqlscope.members(conn, shopper)
        seq = await sqlscope.tell_campaigns(conn, stores, shopper, now_us, exposure_id=exposure.exposure_id)
        return PostOutcome(duplicate=False, stores=len(stores) if seq is not None else 0)


# ----- pushed events -----
def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= MAX_AMOUNT else None


def store_sale(store_id: str, event: EventRecord) -> SaleRecord | str:
    """The sale a pushed ``conversion`` event records, or the reason it cannot be used."""
    data = event.data
    items, total, currency = data.get("items"), _number(data.get("total")), data.get("currency")
    if not isinstance(items, list) or total is None:
        return BAD_CONVERSION
    if not items:
        return SALE_WITHOUT_ITEMS
    if len(items) > MAX_SALE_LINES or (currency is not None and not isinstance(currency, str)):
        return BAD_CONVERSION
    lines = []
    for item in items:
        if not isinstance(item, dict):
            return BAD_CONVERSION
        sku, qty, price, category = (
            item.get("sku"),
            item.get("qty"),
            _number(item.get("price")),
            item.get("category"),
        )
        if not isinstance(sku, str) or not 0 < len(sku) <= MAX_SKU_CHARS:
            return BAD_CONVERSION
        if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= 1_000_000 or price is None:
            return BAD_CONVERSION
        lines.append(SaleLine(sku, qty, price, category if category in CATEGORIES else None))
    return SaleRecord(event.id, STORE, store_id, event.shopper_id, event.at_us, total, currency, tuple(lines))


def _offer_keys(document: str) -> list[str]:
    offer = json.loads(document)
    skus = [sku for sku in offer.get("skus") or () if isinstance(sku, str)]
    category = offer.get("category")
    return touch_keys(skus, category if isinstance(category, str) else None)


async def index_events(conn: Connection, store_id: str, events: Sequence[EventRecord], now_us: int) -> None:
    """What the join needs of freshly stored pushed events, in the push's own transaction (so a stored event
    is always in the join, once): identified decisions' offers, identified exposures of an offer (touches),
    conversions (store sales); what cannot be used is counted. Decisions before exposures: a batch may hold
    both."""
    wanted = [event for event in events if event.kind in ("decision", "exposure", "conversion")]
    if not wanted:
        return
    order = {"decision": 0, "conversion": 1, "exposure": 2}
    skipped: list[tuple[str, str, int]] = []
    erased = await _erased_at(conn, [event.shopper_id for event in wanted if event.shopper_id])
    for event in sorted(wanted, key=lambda event: order[event.kind]):
        shopper = _owner(event.shopper_id, event.at_us, erased)
        if event.kind == "conversion":
            sale = store_sale(store_id, event)
            if isinstance(sale, str):
                skipped.append((event.id, sale, event.at_us))
            else:
                await _insert_sale(conn, sale, shopper, now_us)
            continue
        decision_id = event.data.get("decision_id")
        if shopper is None or not isinstance(decision_id, str) or not _DECISION_ID.match(decision_id):
            continue  # anonymous: nobody's touch
        if event.kind == "decision":
            offer_id = event.data.get("offer_id")
            await conn.execute(
                "INSERT INTO store_decisions (store_id, decision_id, offer_id, at_us) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (store_id, decision_id) DO NOTHING",
                store_id,
                decision_id,
                offer_id if isinstance(offer_id, str) else None,
                event.at_us,
            )
            continue
        decision = await one(
            conn,
            "SELECT offer_id FROM store_decisions WHERE store_id = $1 AND decision_id = $2",
            store_id,
            decision_id,
        )
        if decision is None:
            skipped.append((event.id, EXPOSURE_WITHOUT_DECISION, event.at_us))
            continue
        if decision[0] is None:
            continue  # the fallback content (no offer, or the holdout group): nothing promoted
        offer = await one(conn, "SELECT offer FROM offers WHERE offer_id = $1", str(decision[0]))
        if offer is None:
            skipped.append((event.id, OFFER_NOT_IN_CATALOG, event.at_us))
            continue
        keys = _offer_keys(str(offer[0]))
        await _insert_touch(
            conn, STORE, event.id, OFFER, str(decision[0]), store_id, shopper, event.at_us, keys
        )
    if skipped:
        await conn.executemany(
            "INSERT INTO crosschannel_skipped (event_id, store_id, reason, at_us) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (event_id) DO NOTHING",
            [(event_id, store_id, reason, at_us) for event_id, reason, at_us in skipped],
        )


async def erase(conn: Connection, shopper_id: str) -> int:
    """The shopper's part of the join (inside the erasure's transaction): their touches and campaign
    exposures go; their sales stay in the totals, no longer theirs. How many campaign exposures went."""
    await conn.execute(
        "DELETE FROM touch_keys WHERE EXISTS (SELECT 1 FROM touches t WHERE t.channel = touch_keys.channel"
        " AND t.touch_id = touch_keys.touch_id AND t.shopper_id = $1)",
        shopper_id,
    )
    await conn.execute("DELETE FROM touches WHERE shopper_id = $1", shopper_id)
    await conn.execute("UPDATE sales SET shopper_id = NULL WHERE shopper_id = $1", shopper_id)
    return await conn.execute("DELETE FROM campaign_exposures WHERE shopper_id = $1", shopper_id)


# ----- the report -----
# One statement, so the pairs are matched once (a CTE read three times is materialised by both databases).
# pairs: every (sale, touch) of one shopper with the touch at most $3 before the sale, sales of [$1, $2).
# hits: the pairs where some line of the sale has a SKU or the category the touch promoted, with those lines'
# revenue. Then three aggregations: last touch per offer/campaign (each sale to its latest matching touch;
# ties: the store's touch, then the larger id), any touch per offer/campaign and any touch per touchpoint
# (each sale once per group that has a matching touch, with its best-matching touch's revenue).
REPORT_SQL: Final = (
    "WITH pairs AS (SELECT s.channel AS to_channel, s.sale_id, t.channel AS from_channel, t.touchpoint,"
    " t.ref_id, t.touch_id, t.at_us AS touch_us FROM sales s JOIN touches t ON t.shopper_id = s.shopper_id"
    " AND t.at_us <= s.at_us AND t.at_us >= s.at_us - $3"
    " WHERE s.shopper_id IS NOT NULL AND s.at_us >= $1 AND s.at_us < $2),"
    " hits AS (SELECT p.to_channel, p.sale_id, p.from_channel, p.touchpoint, p.ref_id, p.touch_id, p.touch_us,"
    " SUM(l.qty * l.price) AS revenue FROM pairs p"
    " JOIN sale_lines l ON l.channel = p.to_channel AND l.sale_id = p.sale_id"
    " WHERE EXISTS (SELECT 1 FROM touch_keys k WHERE k.channel = p.from_channel AND k.touch_id = p.touch_id"
    " AND k.key IN ('sku:' || l.sku, 'category:' || l.category))"
    " GROUP BY p.to_channel, p.sale_id, p.from_channel, p.touchpoint, p.ref_id, p.touch_id, p.touch_us),"
    " ranked AS (SELECT from_channel, touchpoint, ref_id, to_channel, revenue, ROW_NUMBER() OVER"
    " (PARTITION BY to_channel, sale_id ORDER BY touch_us DESC, from_channel DESC, touch_id DESC) AS place"
    " FROM hits),"
    " per_ref AS (SELECT from_channel, touchpoint, ref_id, to_channel, MAX(revenue) AS revenue FROM hits"
    " GROUP BY from_channel, touchpoint, ref_id, to_channel, sale_id),"
    " per_point AS (SELECT from_channel, touchpoint, to_channel, MAX(revenue) AS revenue FROM hits"
    " GROUP BY from_channel, touchpoint, to_channel, sale_id)"
    " SELECT 'last_touch' AS basis, from_channel, touchpoint, ref_id, to_channel, COUNT(*), SUM(revenue)"
    " FROM ranked WHERE place = 1 GROUP BY from_channel, touchpoint, ref_id, to_channel"
    " UNION ALL SELECT 'any_touch', from_channel, touchpoint, ref_id, to_channel, COUNT(*), SUM(revenue)"
    " FROM per_ref GROUP BY from_channel, touchpoint, ref_id, to_channel"
    " UNION ALL SELECT 'any_touch', from_channel, touchpoint, NULL, to_channel, COUNT(*), SUM(revenue)"
    " FROM per_point GROUP BY from_channel, touchpoint, to_channel"
    " ORDER BY 1 DESC, 2, 3, 4, 5"
)


def _rows(rows: list[Sequence[Any]]) -> list[CrossRow]:
    return [
        CrossRow(
            str(basis),
            str(from_channel),
            str(touchpoint),
            None if ref_id is None else str(ref_id),
            str(to_channel),
            int(count),
            float(revenue or 0.0),
        )
        for basis, from_channel, touchpoint, ref_id, to_channel, count, revenue in rows
    ]


def _last_touch_totals(rows: list[CrossRow]) -> list[CrossRow]:
    # One touch per sale: the per-touchpoint sums are exact.
    conversions: Counter[tuple[str, str, str]] = Counter()
    revenue: dict[tuple[str, str, str], float] = {}
    for row in rows:
        group = (row.from_channel, row.touchpoint, row.to_channel)
        conversions[group] += row.conversions
        revenue[group] = revenue.get(group, 0.0) + row.revenue
    return [
        CrossRow("last_touch", group[0], group[1], None, group[2], conversions[group], revenue[group])
        for group in sorted(conversions)
    ]


async def cross_channel(
    db: Database, since_us: int, until_us: int, window_us: int
) -> tuple[list[CrossRow], CrossTotals]:
    """See ``Storage.cross_channel``."""
    window = (since_us, until_us, window_us)
    async with db.reading() as conn:  # one snapshot: the rows and the totals agree
        rows = _rows(await conn.fetch(REPORT_SQL, *window))
        sales = await conn.fetch(
            "SELECT channel, COUNT(*), COUNT(shopper_id) FROM sales WHERE at_us >= $1 AND at_us < $2"
            " GROUP BY channel ORDER BY channel",
            since_us,
            until_us,
        )
        touches = await conn.fetch(
            "SELECT touchpoint, COUNT(*) FROM touches WHERE at_us >= $1 AND at_us < $2"
            " GROUP BY touchpoint ORDER BY touchpoint",
            since_us,
            until_us,
        )
        skipped = await conn.fetch(
            "SELECT reason, COUNT(*) FROM crosschannel_skipped WHERE at_us >= $1 AND at_us < $2"
            " GROUP BY reason ORDER BY reason",
            since_us,
            until_us,
        )
        currencies = await conn.fetch(
            "SELECT DISTINCT currency FROM sales WHERE at_us >= $1 AND at_us < $2 AND currency IS NOT NULL"
            " ORDER BY currency",
            since_us,
            until_us,
        )
    totals = CrossTotals(
        sales={str(channel): int(count) for channel, count, _ in sales},
        identified_sales={str(channel): int(named) for channel, _, named in sales},
        touches={str(touchpoint): int(count) for touchpoint, count in touches},
        skipped={str(reason): int(count) for reason, count in skipped},
        currencies=tuple(str(currency) for (currency,) in currencies),
    )
    last = [row for row in rows if row.basis == "last_touch"]
    return [*_last_touch_totals(last), *rows], totals
