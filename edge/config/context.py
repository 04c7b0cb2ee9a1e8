"""The ``[context]`` section: how old the store's weather may be, how long a basket lasts, how often the local
trends are read (docs/context.md). Schema only."""

from __future__ import annotations

from pydantic import Field

from edge.config.base import HOUR_S, Section

# A weather reading is hourly at best (a cloud feed) or every few minutes (a sensor): under 10 minutes of
# staleness the fallback to "unknown" would flicker between readings; over a day "now" means nothing.
MIN_WEATHER_STALE_S = 600.0
MAX_WEATHER_STALE_S = 24 * HOUR_S
# A visit: under a minute is a shopper still at the till; over 4 hours is not the same visit.
MIN_BASKET_TTL_S = 60.0
MAX_BASKET_TTL_S = 4 * HOUR_S
# A decision logs its basket whole up to 64 SKUs (edge/decide/logged.py MAX_BASKET), so an off-policy
# evaluation can rebuild its features exactly; a basket never holds more.
MAX_BASKET_SKUS = 64
# Reading the week's sales is one indexed scan; more than once a minute buys nothing (a day's share moves
# slowly), less than once a day would leave Monday's trends on Tuesday.
MIN_TRENDS_REFRESH_S = 60.0
MAX_TRENDS_REFRESH_S = 24 * HOUR_S


class ContextSettings(Section):
    """The store's context for decisions: weather, the shopper's basket, this store's trends."""

    weather_stale_s: float = Field(
        default=3 * HOUR_S,
        ge=MIN_WEATHER_STALE_S,
        le=MAX_WEATHER_STALE_S,
        description="A weather observation older than this (by its own `observed_at`, against the gateway's "
        "clock) is no weather: decisions see `unknown`, never an old value. Default 3 h; 10 min to 24 h.",
    )
    basket_ttl_s: float = Field(
        default=HOUR_S,
        ge=MIN_BASKET_TTL_S,
        le=MAX_BASKET_TTL_S,
        description="A shopper's basket (their POS sale, an app cart) is forgotten this long after it was last "
        "added to, or at once when they leave every zone. Memory only. Default 1 h; 1 min to 4 h.",
    )
    cart_max_items: int = Field(
        default=50,
        ge=1,
        le=MAX_BASKET_SKUS,
        description="The most distinct SKUs a basket holds, from carts and POS sales alike (the newest are "
        "kept; the rest are counted as `context.basket.skus_dropped`); at most 64. A cart longer than 200 "
        "items refuses its check-in (the contract's cap, as a POS sale's). Default 50.",
    )
    basket_max_shoppers: int = Field(
        default=2_000,
        ge=1,
        le=50_000,
        description="Shoppers whose basket is held at once; past it the oldest basket goes first (counted). "
        "Default 2,000 (a busy store's hour); at most ~1 KiB each.",
    )
    trends_refresh_s: float = Field(
        default=15 * 60.0,
        ge=MIN_TRENDS_REFRESH_S,
        le=MAX_TRENDS_REFRESH_S,
        description="How often this store's share of sales per category over the last 7 days is read from the "
        "ledger (off the event loop; decisions read the last result). Default 15 min; 1 min to 24 h.",
    )
