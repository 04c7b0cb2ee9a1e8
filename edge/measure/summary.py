"""The measurement report's summary (``summary.json`` of ``edge-gateway report``): one dict, numbers only.

Built from SQL aggregates of the ledger (``edge/ledger/measure.py``) and the statistics of
``edge/measure/estimates.py``; rendered by the report; its shape is documented key by key in
docs/measurement.md. Nothing here holds a row per exposure or per sale: SQLite aggregates, this module
only turns the aggregates into rates, differences and intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any, Final
from zoneinfo import ZoneInfo

from edge.clock import iso_utc
from edge.config.measurement import MeasurementSettings
from edge.ledger import measure
from edge.ledger.measure import ArmRow, Connection, OfferRule, Period
from edge.measure.estimates import (
    Moments,
    mean_difference,
    minimum_detectable_effect,
    proportion_difference,
    wilson,
)

SUMMARY_VERSION: Final = 1
_DAY_S: Final = 86_400.0
_HOUR_S: Final = 3_600.0
METHOD: Final = {
    "rate_ci": "Wilson score interval of each arm's conversion rate",
    "difference_ci": "Newcombe's hybrid score interval (method 10) of treated minus holdout conversion rate",
    "revenue_ci": "normal interval of revenue per shopper; Welch's standard error for the difference",
    "mde": "smallest rate difference detectable with 80 % power (two-sided) at the holdout's rate",
}


def build_summary(
    conn: Connection,
    *,
    store: str,
    since: float,
    until: float,
    offers: Iterable[OfferRule],
    settings: MeasurementSettings,
    generated_at: float,
    tz: str = "UTC",
    titles: Mapping[str, str] | None = None,
    currency: str | None = None,
    ope: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The summary of one store's ledger for touches (decisions, exposures, staff, devices, campaigns) in
    ``[since, until)`` (unix seconds, the gateway's wall clock), as a JSON-ready dict of the documented shape.

    - ``conn``: a connection to the ledger file (``edge.ledger.readonly.read_only(path)`` beside a running
      gateway); the file is only read (the queries' working tables are TEMP tables of the connection).
    - ``store``: the store id (``[store] id``), copied into the summary.
    - ``offers``: the gateway's catalog (the offers file merged with the cloud's ``offers`` table:
      ``edge.decide.catalog.merged_catalog``); attribution matches sale lines by each offer's SKUs or category.
      Exposures of an offer not in ``offers`` are skipped (``counts.skipped.exposure_offer_not_in_catalog``).
    - ``settings``: ``[measurement]`` (the attribution window, the visit window of staff and devices, the POS
      clock tolerance). Sales are counted up to a window after ``until``, so a touch late in the period
      gets its whole window (when the ledger has those sales yet).
    - ``generated_at``: when the report was made (from the caller's clock), ISO-8601 in the summary.
    - ``tz``: the store's time zone (``[decisions.policy] tz``): the hours of ``exposures_by_hour_zone``.
    - ``titles``: offer id -> title for the per-offer rows (default: the offers' own ``title`` if they have
      one, else the id).
    - ``currency``: the sales' currency when the caller knows it; else the one currency the period's sales
      name, or null when they name none or several.
    - ``ope``: the off-policy evaluation part (``{"candidate": EST, "running": EST}``), copied as is; null
      without a candidate model.
    - ``confidence``: of every interval (0.95).

    Rows that cannot be counted are in ``counts.skipped`` by reason. An arm without shoppers has null rates,
    intervals and differences.
    """
    offers = tuple(offers)
    names = {offer.id: _title(offer) for offer in offers}
    names.update(titles or {})
    period = Period(
        since=since,
        until=until,
        window_s=settings.attribution_window_days * _DAY_S,
        service_window_s=settings.service_window_hours * _HOUR_S,
        pos_clock_tolerance_s=settings.pos_clock_tolerance_s,
    )
    skipped = measure.prepare(conn, offers, period)
    counted = measure.counts(conn, period)
    credits, near = measure.attribution(conn, period)
    arms, mixed = measure.holdout_arms(conn, period)
    heat, orphans = _heat_map(measure.exposures_by_bucket(conn, period), tz)
    touch = measure.touchpoints(conn, period)
    for reason, count in (
        ("sale_just_before_touch", near),
        ("shopper_in_both_arms", mixed),
        ("exposure_without_decision", orphans),
    ):
        if count:
            skipped[reason] = count
    if currency is None and len(counted.currencies) == 1:
        currency = counted.currencies[0]
    return {
        "v": SUMMARY_VERSION,
        "store": store,
        "since": iso_utc(since),
        "until": iso_utc(until),
        "generated_at": iso_utc(generated_at),
        "window_days": settings.attribution_window_days,
        "currency": currency,
        "method": {
            **METHOD,
            "confidence": confidence,
            "service_window_hours": settings.service_window_hours,
            "pos_clock_tolerance_s": settings.pos_clock_tolerance_s,
        },
        "counts": {
            "decisions": counted.decisions,
            "exposures": counted.exposures,
            "conversions": counted.conversions,
            "identified_conversions": counted.identified_conversions,
            "skipped": dict(sorted(skipped.items())),
        },
        "holdout": _holdout(arms, names, confidence),
        "attribution": _attribution(credits),
        "exposures_by_hour_zone": heat,
        "touchpoints": {
            "staff": {"assisting": touch.assisting, "dismissed": touch.dismissed},
            "devices": {
                "settings": touch.device_settings,
                "for_shoppers": touch.device_settings_for_shoppers,
            },
        },
        "ope": None if ope is None else dict(ope),
    }


def _title(offer: OfferRule) -> str:
    title = getattr(offer, "title", None)
    return title if isinstance(title, str) and title else offer.id


def _side(row: ArmRow | None, z: float, confidence: float) -> dict[str, Any]:
    """One arm's shoppers, conversions, rate and revenue per shopper with their intervals."""
    if row is None or row.shoppers == 0:
        return {
            "shoppers": 0,
            "converted": 0,
            "rate": None,
            "rate_ci": None,
            "revenue_per_shopper": None,
            "revenue_ci": None,
        }
    rate = wilson(row.converted, row.shoppers, confidence)
    moments = Moments(row.shoppers, row.revenue, row.revenue_squares)
    half = z * math.sqrt(moments.variance / moments.n)
    return {
        "shoppers": row.shoppers,
        "converted": row.converted,
        "rate": rate.estimate,
        "rate_ci": [rate.low, rate.high],
        "revenue_per_shopper": moments.mean,
        "revenue_ci": [moments.mean - half, moments.mean + half],
    }


def _arm(treated: ArmRow | None, holdout: ArmRow | None, confidence: float) -> dict[str, Any]:
    """The documented ARM: both sides, the differences treated minus holdout, and the detectable effect."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    arm: dict[str, Any] = {
        "treated": _side(treated, z, confidence),
        "holdout": _side(holdout, z, confidence),
        "rate_diff": None,
        "rate_diff_ci": None,
        "revenue_diff": None,
        "revenue_diff_ci": None,
        "mde_rate": None,
    }
    if treated is None or holdout is None or treated.shoppers == 0 or holdout.shoppers == 0:
        return arm
    rate = proportion_difference(
        treated.converted, treated.shoppers, holdout.converted, holdout.shoppers, confidence
    )
    revenue = mean_difference(
        Moments(treated.shoppers, treated.revenue, treated.revenue_squares),
        Moments(holdout.shoppers, holdout.revenue, holdout.revenue_squares),
        confidence,
    )
    arm.update(
        rate_diff=rate.estimate,
        rate_diff_ci=[rate.low, rate.high],
        revenue_diff=revenue.estimate,
        revenue_diff_ci=[revenue.low, revenue.high],
        mde_rate=minimum_detectable_effect(
            holdout.converted / holdout.shoppers, treated.shoppers, holdout.shoppers, confidence
        ),
    )
    return arm


def _holdout(rows: Iterable[ArmRow], names: Mapping[str, str], confidence: float) -> dict[str, Any]:
    sides: dict[str | None, dict[bool, ArmRow]] = {}
    for row in rows:
        sides.setdefault(row.offer_id, {})[row.treated] = row
    overall = sides.pop(None, {})
    return {
        "overall": _arm(overall.get(True), overall.get(False), confidence),
        "offers": [
            {
                "offer_id": offer_id,
                "title": names.get(offer_id, offer_id),
                **_arm(by.get(True), by.get(False), confidence),
            }
            for offer_id, by in sorted(sides.items(), key=lambda item: str(item[0]))
            if offer_id is not None
        ],
    }


def _attribution(credits: Iterable[measure.Credit]) -> dict[str, list[dict[str, Any]]]:
    """Touchpoints that were credited, most conversions first (then by touchpoint and id)."""
    credits = tuple(credits)
    last = sorted(credits, key=lambda c: (-c.last_conversions, c.kind, c.ident))
    every = sorted(credits, key=lambda c: (-c.any_conversions, c.kind, c.ident))
    return {
        "last_touch": [
            {
                "touchpoint": c.kind,
                "id": c.ident,
                "conversions": c.last_conversions,
                "revenue": c.last_revenue,
            }
            for c in last
            if c.last_conversions
        ],
        "any_touch": [
            {"touchpoint": c.kind, "id": c.ident, "conversions": c.any_conversions, "revenue": c.any_revenue}
            for c in every
            if c.any_conversions
        ],
    }


def _heat_map(buckets: Iterable[tuple[str | None, int, int]], tz: str) -> tuple[dict[str, Any], int]:
    """Quarter-hour counts per zone -> counts per zone and local hour of day; and the exposures whose
    decision was missing (no zone)."""
    zone_info = ZoneInfo(tz)
    by_zone: dict[str, list[int]] = {}
    orphans = 0
    for zone, bucket, count in buckets:
        if zone is None:
            orphans += count
            continue
        hour = datetime.fromtimestamp(bucket * measure.HOUR_BUCKET_S, UTC).astimezone(zone_info).hour
        by_zone.setdefault(zone, [0] * 24)[hour] += count
    zones = sorted(by_zone)
    return {"zones": zones, "hours": list(range(24)), "counts": [by_zone[zone] for zone in zones]}, orphans
