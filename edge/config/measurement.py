"""The ``[measurement]`` section: how sales are attributed to touchpoints (docs/measurement.md). Schema only."""

from __future__ import annotations

from typing import Final

from pydantic import Field

from edge.config.base import Section

# A touch is credited with sales for at most a quarter: past that, a sale says nothing about a screen.
MAX_ATTRIBUTION_DAYS: Final = 90
# A shopper token lives at most 30 minutes (MAX_TOKEN_LIFETIME_S) plus the verifier's leeway, and it is
# scanned at the till: an identified sale the gateway hears of more than that after (or any time before) its
# POS time stamp says the POS clock is off, not that the sale is old.
MAX_POS_CLOCK_TOLERANCE_S: Final = 7_200.0


class MeasurementSettings(Section):
    """Attribution of POS sales to touchpoints and the holdout comparison (``edge-gateway report``)."""

    attribution_window_days: int = Field(
        default=14,
        ge=1,
        le=MAX_ATTRIBUTION_DAYS,
        description="A sale of the same shopper is credited to a touch (an offer shown, staff assisting, a "
        "device set for them, an online campaign) at most this many days after it (at most 90).",
    )
    service_window_hours: int = Field(
        default=4,
        ge=1,
        le=72,
        description="A staff `assisting` or a device set for a shopper is credited with that shopper's sales "
        "(their whole total, any product) within this many hours: the visit it served.",
    )
    pos_clock_tolerance_s: float = Field(
        default=600.0,
        ge=1.0,
        le=MAX_POS_CLOCK_TOLERANCE_S,
        allow_inf_nan=False,
        description="A sale whose POS time stamp differs from when the gateway heard it by more than this "
        "(a POS clock off) is kept but never attributed, and counted as `pos_clock_skew` in the report.",
    )
