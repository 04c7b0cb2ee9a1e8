"""Every SQL the measurement report needs (docs/measurement.md): aggregated in SQLite, streamed out.

The report reads a ledger file beside the running gateway (``edge/ledger/readonly.py``), so each function
takes a plain ``sqlite3.Connection`` (read-only is enough: what the queries need besides the ledger, the
offers, the period's touches and its sales, goes into TEMP tables, which live in the connection's own
temporary database). Times are unix seconds on the gateway's wall clock.

The rules (docs/measurement.md "Attribution"):

- a **touch** is an acked exposure of an offer (not a holdout decision; the offer in the catalog), a staff
  ``assisting``, a device set for the shopper, or an online campaign the cloud says the shopper saw, in
  ``[since, until)``, of an identified shopper (``measurement``);
- a **sale** counts when it names its shopper (``measurement``) and its POS time stamp is within
  ``pos_clock_tolerance_s`` of when the gateway heard it (else ``pos_clock_skew``: never attributed);
- an offer's (or campaign's) touch **qualifies** for a sale of the same shopper stamped at or after the touch
  and at most ``window_s`` after it, when a line's SKU is one of its SKUs or a line is of its category; the
  credited revenue is those lines' ``qty * price``. A staff or device touch qualifies for any sale within
  ``service_window_s`` (the visit), credited with the sale's total.

Cost (docs/benchmarks.md "report"): one pass joins the period's exposures to their decisions (the touches and
the exposures per zone and hour both come from it); everything else works on the TEMP tables, each read
through an index. About 7-8 s of CPU and 65 MB for 1,000,000 exposures and 200,000 sales on the dev VM.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

# A sale stamped this little before a touch it would match (the POS clock a little behind the gateway's) is
# counted as ``sale_just_before_touch``: never attributed, but visible.
NEAR_MISS_S: Final = 30.0
# Exposures per hour of day and zone are counted in buckets of this many seconds, turned into the store's
# local hours afterwards: every time zone of the world is a whole number of quarter hours from UTC.
HOUR_BUCKET_S: Final = 900

# The connection every function here takes (a tool's, read-only beside the gateway): named here so modules
# outside the ledger need not import sqlite3 (tests/test_boundaries.py).
Connection = sqlite3.Connection

OFFER: Final = "offer"
STAFF: Final = "staff"
DEVICE: Final = "device"
CAMPAIGN: Final = "campaign"


class OfferRule(Protocol):
    """What attribution needs of an offer (the contract's ``Offer`` is one): a sale line matches it when its
    SKU is one of ``skus`` or its category is ``category``."""

    @property
    def id(self) -> str: ...

    @property
    def skus(self) -> tuple[str, ...]: ...

    @property
    def category(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Period:
    """What one report measures: touches in ``[since, until)``; sales from ``since`` up to the longer window
    after ``until``, so a touch late in the period gets its whole window (if the ledger has it yet)."""

    since: float
    until: float
    window_s: float
    service_window_s: float
    pos_clock_tolerance_s: float

    @property
    def sales_until(self) -> float:
        return self.until + max(self.window_s, self.service_window_s)

    def params(self) -> dict[str, float]:
        return {
            "since": self.since,
            "until": self.until,
            "sales_until": self.sales_until,
            "window": self.window_s,
            "service": self.service_window_s,
            "wide": max(self.window_s, self.service_window_s),
            "tolerance": self.pos_clock_tolerance_s,
            "near": NEAR_MISS_S,
            "bucket": HOUR_BUCKET_S,
        }


# The touches attribution and the arms read (m_touch's partial index): identified, promoting something known.
_ATTRIBUTABLE: Final = "shopper_id IS NOT NULL AND target IS NOT NULL"
# The revenue of a sale's lines that match a target, from ``LEFT JOIN m_target g``, ``m_cat c`` (the sale's
# lines of g's category) and ``m_hit h`` (its other lines with one of g's SKUs): NULL when none matches.
_MATCHED: Final = (
    "CASE WHEN c.amount IS NULL AND h.amount IS NULL THEN NULL "
    "ELSE coalesce(c.amount, 0.0) + coalesce(h.amount, 0.0) END"
)


def _match_joins(sale: str, target: str) -> str:
    """The joins ``_MATCHED`` reads, for sale ``sale`` (an ``m_sale.sale``) and target ``target``."""
    return (
        f"LEFT JOIN m_target g ON g.target = {target} "
        f"LEFT JOIN m_cat c ON c.sale = {sale} AND c.category = g.category "
        f"LEFT JOIN m_hit h ON h.sale = {sale} AND h.target = g.target "
    )


_TARGETS: Final = (
    "DROP TABLE IF EXISTS temp.m_target",
    "DROP TABLE IF EXISTS temp.m_target_sku",
    # What a sale line can match: an offer of the catalog or an online campaign.
    "CREATE TEMP TABLE m_target (target INTEGER PRIMARY KEY, kind TEXT NOT NULL, ident TEXT NOT NULL, "
    "category TEXT, UNIQUE (kind, ident))",
    "CREATE TEMP TABLE m_target_sku (sku TEXT NOT NULL, target INTEGER NOT NULL, PRIMARY KEY (sku, target)) "
    "WITHOUT ROWID",
)
_SALES: Final = (
    "DROP TABLE IF EXISTS temp.m_sale",
    "DROP TABLE IF EXISTS temp.m_cat",
    "DROP TABLE IF EXISTS temp.m_hit",
    # The sales that may be attributed: their shopper named, their POS clock believable.
    "CREATE TEMP TABLE m_sale (sale INTEGER PRIMARY KEY, event_id TEXT NOT NULL, shopper_id TEXT NOT NULL, "
    "at_wall REAL NOT NULL, total REAL NOT NULL)",
    "INSERT INTO m_sale (event_id, shopper_id, at_wall, total) "
    "SELECT c.event_id, c.shopper_id, c.at_wall, c.total FROM conversions c "
    "WHERE c.at_wall >= :since AND c.at_wall < :sales_until AND c.shopper_id IS NOT NULL "
    "AND abs(c.at_wall - c.received_wall) <= :tolerance",
    "CREATE INDEX temp.m_sale_shopper ON m_sale (shopper_id, at_wall, sale, total)",
    # Each sale's revenue per category of its lines, and per target whose SKUs its other lines carry: what
    # a sale's match with a target is read from, two look-ups (``_MATCHED``).
    "CREATE TEMP TABLE m_cat (sale INTEGER NOT NULL, category TEXT NOT NULL, amount REAL NOT NULL, "
    "PRIMARY KEY (sale, category)) WITHOUT ROWID",
    "INSERT INTO m_cat (sale, category, amount) SELECT s.sale, i.category, sum(i.qty * i.price) "
    "FROM m_sale s JOIN conversion_items i ON i.event_id = s.event_id WHERE i.category IS NOT NULL "
    "GROUP BY s.sale, i.category",
    "CREATE TEMP TABLE m_hit (sale INTEGER NOT NULL, target INTEGER NOT NULL, amount REAL NOT NULL, "
    "PRIMARY KEY (sale, target)) WITHOUT ROWID",
    "INSERT INTO m_hit (sale, target, amount) SELECT s.sale, k.target, sum(i.qty * i.price) "
    "FROM m_sale s JOIN conversion_items i ON i.event_id = s.event_id JOIN m_target_sku k ON k.sku = i.sku "
    "JOIN m_target g ON g.target = k.target WHERE NOT coalesce(i.category = g.category, 0) GROUP BY s.sale, k.target",
)
_TOUCHES: Final = (
    "DROP TABLE IF EXISTS temp.m_touch",
    "DROP TABLE IF EXISTS temp.m_arm",
    "DROP TABLE IF EXISTS temp.m_mixed",
    # Every touch in the period, with the end of its window and what it promotes (``target``: 0 for a service
    # touch, any sale). Offers: every exposure of an offer (not a holdout decision), anonymous ones too, with
    # its zone: the one pass over exposures and their decisions, for the heat map as well. Only identified
    # touches with a target are attributed (the partial index); an offer not in the catalog has target NULL,
    # an exposure without its decision (a damaged file) zone NULL.
    "CREATE TEMP TABLE m_touch (shopper_id TEXT, at_wall REAL NOT NULL, until_wall REAL NOT NULL, "
    "kind TEXT NOT NULL, ident TEXT NOT NULL, target INTEGER, zone TEXT)",
    "INSERT INTO m_touch (shopper_id, at_wall, until_wall, kind, ident, target, zone) "
    "SELECT e.shopper_id, e.shown_at_wall, e.shown_at_wall + :window, 'offer', coalesce(d.offer_id, ''), "
    "g.target, d.zone FROM exposures e LEFT JOIN decisions d ON d.decision_id = e.decision_id "
    "LEFT JOIN m_target g ON g.kind = 'offer' AND g.ident = d.offer_id "
    "WHERE e.acked_at_wall >= :since AND e.acked_at_wall < :until "
    "AND (d.decision_id IS NULL OR (d.offer_id IS NOT NULL AND d.holdout = 0))",
    "INSERT INTO m_touch (shopper_id, at_wall, until_wall, kind, ident, target) "
    "SELECT shopper_id, at_wall, at_wall + :service, 'staff', team, 0 FROM staff_interactions "
    "WHERE at_wall >= :since AND at_wall < :until AND action = 'assisting' AND shopper_id IS NOT NULL",
    "INSERT INTO m_touch (shopper_id, at_wall, until_wall, kind, ident, target) "
    "SELECT p.shopper_id, s.at_wall, s.at_wall + :service, 'device', s.device_id, 0 "
    "FROM device_settings s JOIN device_setting_shoppers p ON p.setting_id = s.id "
    "WHERE s.at_wall >= :since AND s.at_wall < :until",
    # Campaigns: their SKUs (a JSON list per exposure) and the first category seen per campaign.
    "INSERT OR IGNORE INTO m_target (kind, ident, category) SELECT 'campaign', campaign_id, category "
    "FROM campaign_exposures WHERE at_wall >= :since AND at_wall < :until ORDER BY at_wall",
    "INSERT OR IGNORE INTO m_target_sku (sku, target) SELECT j.value, g.target "
    "FROM campaign_exposures x JOIN m_target g ON g.kind = 'campaign' AND g.ident = x.campaign_id, "
    "json_each(CASE WHEN json_valid(x.skus) THEN x.skus ELSE '[]' END) j "
    "WHERE x.at_wall >= :since AND x.at_wall < :until AND j.type = 'text'",
    "INSERT INTO m_touch (shopper_id, at_wall, until_wall, kind, ident, target) "
    "SELECT x.shopper_id, x.at_wall, x.at_wall + :window, 'campaign', x.campaign_id, g.target "
    "FROM campaign_exposures x "
    "JOIN m_target g ON g.kind = 'campaign' AND g.ident = x.campaign_id "
    "WHERE x.at_wall >= :since AND x.at_wall < :until",
)


def _load_offers(conn: sqlite3.Connection, offers: Iterable[OfferRule]) -> None:
    for statement in _TARGETS:
        conn.execute(statement)
    for offer in offers:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO m_target (kind, ident, category) VALUES (?, ?, ?) RETURNING target",
            (OFFER, offer.id, offer.category),
        )
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            continue  # a second offer with the same id: the first stands (the catalog refuses it anyway)
        conn.executemany(
            "INSERT OR IGNORE INTO m_target_sku (sku, target) VALUES (?, ?)",
            [(sku, row[0]) for sku in offer.skus],
        )


def _load_sales(conn: sqlite3.Connection, params: dict[str, float]) -> None:
    for statement in _SALES:
        conn.execute(statement, params)


def prepare(conn: sqlite3.Connection, offers: Iterable[OfferRule], period: Period) -> dict[str, int]:
    """Load the offers, the period's touches and its countable sales into the connection's TEMP tables;
    what was skipped on the way, by reason (only reasons that occurred). Call it first: the other queries
    of a report (but ``counts`` and ``touchpoints``) read these tables.
    """
    params = period.params()
    _load_offers(conn, offers)
    for statement in _TOUCHES:
        conn.execute(statement, params)
    (unknown,), *_ = conn.execute(
        "SELECT count(*) FROM m_touch WHERE kind = 'offer' AND target IS NULL AND zone IS NOT NULL"
    ).fetchall()
    # (shopper, kind, ident, at): a sale finds its shopper's touches, and the arms group by it, in order.
    conn.execute(
        "CREATE INDEX temp.m_touch_shopper ON m_touch (shopper_id, kind, ident, at_wall, until_wall, target) "
        f"WHERE {_ATTRIBUTABLE}"
    )
    _load_sales(conn, params)
    (skewed, without_lines), *_ = conn.execute(
        "SELECT total(abs(c.at_wall - c.received_wall) > :tolerance), "
        "total(NOT EXISTS (SELECT 1 FROM conversion_items i WHERE i.event_id = c.event_id)) "
        "FROM conversions c WHERE c.at_wall >= :since AND c.at_wall < :sales_until",
        params,
    ).fetchall()
    found = {
        "exposure_offer_not_in_catalog": int(unknown),
        "pos_clock_skew": int(skewed),
        "sale_without_items": int(without_lines),
    }
    return {reason: count for reason, count in found.items() if count}


@dataclass(frozen=True, slots=True)
class Counts:
    decisions: int
    exposures: int
    conversions: int
    identified_conversions: int
    currencies: tuple[str, ...]


def counts(conn: sqlite3.Connection, period: Period) -> Counts:
    """Decisions made, exposures acked and sales stamped in ``[since, until)``; the sales' currencies (at most
    two: one is the report's, two say there are several)."""
    params = period.params()
    (decisions,), *_ = conn.execute(
        "SELECT count(*) FROM decisions WHERE at_wall >= :since AND at_wall < :until", params
    ).fetchall()
    (exposures,), *_ = conn.execute(
        "SELECT count(*) FROM exposures WHERE acked_at_wall >= :since AND acked_at_wall < :until", params
    ).fetchall()
    (sales, identified), *_ = conn.execute(
        "SELECT count(*), count(shopper_id) FROM conversions WHERE at_wall >= :since AND at_wall < :until",
        params,
    ).fetchall()
    currencies = tuple(
        str(row[0])
        for row in conn.execute(
            "SELECT DISTINCT currency FROM conversions WHERE at_wall >= :since AND at_wall < :until "
            "AND currency IS NOT NULL LIMIT 2",
            params,
        )
    )
    return Counts(int(decisions), int(exposures), int(sales), int(identified), currencies)


@dataclass(frozen=True, slots=True)
class Credit:
    """One touchpoint's conversions and revenue, last-touch and any-touch."""

    kind: str
    ident: str
    last_conversions: int
    last_revenue: float
    any_conversions: int
    any_revenue: float


# Per (sale, touchpoint): its latest touch at or before the sale whose window the sale is in (NULL: none), and
# whether it also touched the shopper just after the sale (within NEAR_MISS_S); with the revenue it would be
# credited, NULL when the sale has nothing the touchpoint promotes. Read in index order: no sort.
_CREDITED: Final = (
    "WITH pair AS (SELECT s.sale, s.total, t.kind, t.ident, t.target, "  # noqa: S608 - constant SQL
    "max(CASE WHEN t.at_wall <= s.at_wall AND s.at_wall <= t.until_wall THEN t.at_wall END) AS touch_at, "
    "max(t.at_wall > s.at_wall) AS late FROM m_sale s JOIN m_touch t ON t.shopper_id = s.shopper_id "
    "WHERE t.target IS NOT NULL AND t.at_wall <= s.at_wall + :near AND t.at_wall >= s.at_wall - :wide "
    "GROUP BY s.sale, t.kind, t.ident), "
    "credited AS (SELECT p.sale, p.kind, p.ident, p.touch_at, p.late, "
    f"CASE WHEN p.target = 0 THEN p.total ELSE {_MATCHED} END AS revenue FROM pair p "
    + _match_joins("p.sale", "p.target")
    + ") "
)


def attribution(conn: sqlite3.Connection, period: Period) -> tuple[list[Credit], int]:
    """Credit per touchpoint (kind, id), in (kind, id) order, and how many counted sales were stamped just
    before a touch they would match (``sale_just_before_touch``); after ``prepare``.

    Each counted sale of a shopper, stamped in ``[since, until + window)``, is matched with the shopper's
    touches before it. Any-touch: every touchpoint with a qualifying touch gets the sale (once, however many
    times it touched). Last-touch: the touchpoint whose qualifying touch is the latest gets it (ties: by kind,
    then id). Revenue: an offer's or campaign's matching lines, a service touch's sale total.
    """
    # One pass: the near misses ride along as a row of their own (kind '', its count as any-touch).
    sql = (
        _CREDITED + ", ranked AS (SELECT kind, ident, revenue, row_number() OVER "  # noqa: S608 - constant SQL
        "(PARTITION BY sale ORDER BY touch_at DESC, kind, ident) AS rank "
        "FROM credited WHERE revenue IS NOT NULL AND touch_at IS NOT NULL) "
        "SELECT kind, ident, total(rank = 1), total(CASE WHEN rank = 1 THEN revenue END), count(*), "
        "total(revenue) FROM ranked GROUP BY kind, ident "
        "UNION ALL SELECT '', '', 0, 0, count(DISTINCT sale), 0 FROM credited WHERE late AND revenue IS NOT NULL "
        "ORDER BY 1, 2"
    )
    credits = []
    near = 0
    for kind, ident, last_n, last_revenue, any_n, any_revenue in conn.execute(sql, period.params()):
        if not kind:
            near = int(any_n)
            continue
        credits.append(
            Credit(str(kind), str(ident), int(last_n), float(last_revenue), int(any_n), float(any_revenue))
        )
    return credits, near


@dataclass(frozen=True, slots=True)
class ArmRow:
    """One arm of the holdout comparison, for one offer (``offer_id``) or overall (None): shoppers, those who
    converted, and the sum and sum of squares of revenue per shopper (for Welch's interval)."""

    offer_id: str | None
    treated: bool
    shoppers: int
    converted: int
    revenue: float
    revenue_squares: float


_ARMS: Final = (
    "DROP TABLE IF EXISTS temp.m_arm",
    "DROP TABLE IF EXISTS temp.m_mixed",
    # Treated: each shopper's first exposure of each offer (m_touch's index is in this order).
    "CREATE TEMP TABLE m_arm AS SELECT shopper_id, ident AS offer_id, target, 1 AS treated, "
    "min(at_wall) AS first_at FROM m_touch WHERE kind = 'offer' AND shopper_id IS NOT NULL "
    "AND target IS NOT NULL GROUP BY shopper_id, kind, ident",
    # Holdout: each shopper's first holdout decision per counterfactual offer (decisions_holdout index).
    "INSERT INTO m_arm (shopper_id, offer_id, target, treated, first_at) "
    "SELECT d.shopper_id, d.counterfactual_offer_id, g.target, 0, min(d.at_wall) FROM decisions d "
    "JOIN m_target g ON g.kind = 'offer' AND g.ident = d.counterfactual_offer_id "
    "WHERE d.at_wall >= :since AND d.at_wall < :until AND d.holdout = 1 AND d.shopper_id IS NOT NULL "
    "GROUP BY d.shopper_id, d.counterfactual_offer_id",
    # Shoppers in both arms (the holdout's salt or share changed in the period): in neither.
    "CREATE TEMP TABLE m_mixed AS SELECT shopper_id FROM m_arm GROUP BY shopper_id "
    "HAVING min(treated) = 0 AND max(treated) = 1",
)
_ARM_TOTALS: Final = (
    "SELECT offer_id, treated, count(*), count(revenue), total(revenue), total(revenue * revenue) FROM r "
    "GROUP BY offer_id, treated ORDER BY offer_id, treated"
)
# Per (offer, arm): the shoppers; and, from the shoppers with a counted sale in the window from their first
# touch (most have none: only they are joined), those whose sales match the offer, with those lines' revenue.
_PER_OFFER: Final = (
    "WITH n AS (SELECT offer_id, treated, count(*) AS shoppers FROM m_arm "  # noqa: S608 - constant SQL
    "WHERE shopper_id NOT IN m_mixed GROUP BY offer_id, treated), "
    f"r AS MATERIALIZED (SELECT a.offer_id, a.treated, sum({_MATCHED}) AS revenue FROM m_arm a "
    "JOIN m_sale s ON s.shopper_id = a.shopper_id AND s.at_wall >= a.first_at "
    "AND s.at_wall <= a.first_at + :window "
    + _match_joins("s.sale", "a.target")
    + "WHERE a.shopper_id NOT IN m_mixed GROUP BY a.rowid), "
    "c AS (SELECT offer_id, treated, count(revenue) AS converted, total(revenue) AS revenue, "
    "total(revenue * revenue) AS squares FROM r GROUP BY offer_id, treated) "
    "SELECT n.offer_id, n.treated, n.shoppers, coalesce(c.converted, 0), coalesce(c.revenue, 0.0), "
    "coalesce(c.squares, 0.0) FROM n LEFT JOIN c ON c.offer_id = n.offer_id AND c.treated = n.treated "
    "ORDER BY n.offer_id, n.treated"
)
# Per (shopper, arm): every counted sale in the window from the shopper's first touch, with its total.
_OVERALL: Final = (
    "WITH a AS (SELECT shopper_id, treated, min(first_at) AS first_at FROM m_arm "  # noqa: S608 - constant SQL
    "WHERE shopper_id NOT IN m_mixed GROUP BY shopper_id, treated), "
    "r AS MATERIALIZED (SELECT NULL AS offer_id, a.treated, sum(s.total) AS revenue FROM a "
    "LEFT JOIN m_sale s ON s.shopper_id = a.shopper_id AND s.at_wall >= a.first_at "
    "AND s.at_wall <= a.first_at + :window GROUP BY a.shopper_id, a.treated) " + _ARM_TOTALS
)


def holdout_arms(conn: sqlite3.Connection, period: Period) -> tuple[list[ArmRow], int]:
    """The holdout comparison's arms, per offer and overall (``offer_id`` None); after ``prepare``.

    Treated: shoppers with an acked, non-holdout exposure of the offer in the period, from their first one.
    Holdout: shoppers with a holdout decision in the period whose counterfactual (the offer the policy would
    have shown) is the offer, from the first such decision. A shopper converts when a counted sale of theirs,
    stamped at or after that start and at most ``window_s`` after it, matches the offer (revenue: the
    matching lines). Overall, per shopper from their first exposure (or holdout decision), every counted sale
    in the window counts, with its total. A shopper found in both arms (the holdout's salt or share changed
    in the period) is in neither; the second value is how many such shoppers there were.
    """
    params = period.params()
    for statement in _ARMS:
        conn.execute(statement, params)
    (mixed,), *_ = conn.execute("SELECT count(*) FROM m_mixed").fetchall()
    rows: list[ArmRow] = []
    for sql in (_PER_OFFER, _OVERALL):
        rows.extend(
            ArmRow(
                offer_id=None if offer_id is None else str(offer_id),
                treated=bool(treated),
                shoppers=int(n),
                converted=int(converted),
                revenue=float(revenue),
                revenue_squares=float(squares),
            )
            for offer_id, treated, n, converted, revenue, squares in conn.execute(sql, params)
        )
    return rows, int(mixed)


def exposures_by_bucket(conn: sqlite3.Connection, period: Period) -> Iterator[tuple[str | None, int, int]]:
    """Acked exposures of offers (not holdout decisions; anonymous ones too) in the period, per zone and
    quarter hour: (zone, bucket = unix seconds // ``HOUR_BUCKET_S``, count); after ``prepare``. Zone None:
    exposures whose decision is missing (``exposure_without_decision``: the ledger's foreign key should make
    it impossible)."""
    sql = (
        "SELECT zone, CAST(at_wall / :bucket AS INTEGER) AS b, count(*) FROM m_touch WHERE kind = 'offer' "
        "GROUP BY zone, b"
    )
    for zone, bucket, count in conn.execute(sql, period.params()):
        yield None if zone is None else str(zone), int(bucket), int(count)


@dataclass(frozen=True, slots=True)
class Touchpoints:
    assisting: int
    dismissed: int
    device_settings: int
    device_settings_for_shoppers: int


def touchpoints(conn: sqlite3.Connection, period: Period) -> Touchpoints:
    """Staff answers by action and device commands (all of them, and those made for identified shoppers)."""
    params = period.params()
    (assisting, dismissed), *_ = conn.execute(
        "SELECT total(action = 'assisting'), total(action = 'dismissed') FROM staff_interactions "
        "WHERE at_wall >= :since AND at_wall < :until",
        params,
    ).fetchall()
    (settings, for_shoppers), *_ = conn.execute(
        "SELECT count(*), total(EXISTS (SELECT 1 FROM device_setting_shoppers p WHERE p.setting_id = s.id)) "
        "FROM device_settings s WHERE s.at_wall >= :since AND s.at_wall < :until",
        params,
    ).fetchall()
    return Touchpoints(int(assisting), int(dismissed), int(settings), int(for_shoppers))


def decision_rewards(
    conn: sqlite3.Connection,
    since: float,
    until: float,
    window_s: float,
    offers: Iterable[OfferRule],
    *,
    pos_clock_tolerance_s: float = 600.0,
) -> Iterator[tuple[str, int, float]]:
    """The reward of each identified decision made in ``[since, until)``, for off-policy evaluation.

    Yields ``(decision_id, converted, revenue)`` in decision time order (ties by id), one row per decision
    whose ``shopper_id`` was kept (the shopper's ``measurement`` consent), streamed from the cursor:

    - ``converted`` is 1 when the same shopper has a sale stamped at or after the decision and at most
      ``window_s`` seconds after it with a line that matches the decision's offer (a line whose SKU is one of
      the offer's SKUs, or of the offer's category), else 0;
    - ``revenue`` is the sum of ``qty * price`` over the matching lines of those sales (0.0 when none).

    A decision without an offer (a fallback, or a holdout decision) has no action to reward: it yields
    ``(decision_id, 0, 0.0)``. So does a decision whose offer is not in ``offers`` (gone from the catalog).
    Sales whose POS clock disagrees with the gateway's by more than ``pos_clock_tolerance_s``, and anonymous
    sales, never count (docs/measurement.md "What is never counted"): the rule is the report's attribution
    rule, so OPE and the holdout comparison count the same conversions.

    Loads ``offers`` and the sales into the connection's TEMP tables (replacing a report's, as ``prepare``
    does); the ledger itself is only read. Consume the iterator before running another query of this module
    on the same connection.
    """
    _load_offers(conn, offers)
    params = {
        "since": since,
        "until": until,
        "sales_until": until + window_s,
        "window": window_s,
        "tolerance": pos_clock_tolerance_s,
    }
    _load_sales(conn, params)
    sql = (
        f"SELECT d.decision_id, sum({_MATCHED}) FROM decisions d "  # noqa: S608 - constant SQL
        "LEFT JOIN m_target o ON o.kind = 'offer' AND o.ident = d.offer_id "
        "LEFT JOIN m_sale s ON o.target IS NOT NULL AND s.shopper_id = d.shopper_id AND s.at_wall >= d.at_wall "
        "AND s.at_wall <= d.at_wall + :window "
        + _match_joins("s.sale", "o.target")
        + "WHERE d.at_wall >= :since AND d.at_wall < :until AND d.shopper_id IS NOT NULL "
        "GROUP BY d.at_wall, d.decision_id ORDER BY d.at_wall, d.decision_id"
    )
    for decision_id, revenue in conn.execute(sql, params):
        if revenue is None:
            yield str(decision_id), 0, 0.0
        else:
            yield str(decision_id), 1, float(revenue)
