"""This store's local trends: each category's share of the sale lines sold here over the last 7 days, read from
the ledger's conversions every ``trends_refresh_s`` and handed to every decision as one immutable mapping (no
SQL on the decision path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from edge.clock import Clock

# "This week": long enough to hold every weekday once (a Saturday-heavy category is not a trend on Monday),
# short enough to follow a season. The definition; not a setting.
TRENDS_DAYS: Final = 7
_DAY_S: Final = 86_400.0

SalesBySku = Callable[[float, float], Awaitable[list[tuple[str, str | None, int]]]]


def shares(
    rows: Iterable[tuple[str, str | None, int]], sku_categories: Mapping[str, str]
) -> tuple[Mapping[str, float] | None, int, int]:
    """(category -> share of the categorised lines, categorised lines, lines of no known category).

    A line's category is the POS's; without one, the category of the offer that lists its SKU; else it is
    counted as uncategorised and left out of the shares (they sum to 1 over what is known). Lines, not
    revenue: one expensive television must not make electronics "trend" over a hundred coffees, and a
    price of 0 (a free sample) still says what sells. None when nothing categorised was sold.
    """
    lines: dict[str, int] = {}
    unknown = 0
    for sku, category, count in rows:
        known = category if category is not None else sku_categories.get(sku)
        if known is None:
            unknown += count
        else:
            lines[known] = lines.get(known, 0) + count
    total = sum(lines.values())
    if not total:
        return None, 0, unknown
    ordered = sorted(lines.items(), key=lambda item: (-item[1], item[0]))
    return MappingProxyType({category: count / total for category, count in ordered}), total, unknown


@dataclass(slots=True, frozen=True)
class TrendsStats:
    known: bool  # a result decisions use now
    age_s: float | None  # since the last refresh
    refreshes: int
    lines: int  # categorised lines of the last refresh's week
    uncategorised: int  # lines whose category is not known (no POS category, no offer lists the SKU)
    categories: int  # categories with a share


class Trends:
    """The last refresh's shares; ``refresh`` reads the week's sales (a worker thread, a read-only connection)."""

    def __init__(
        self, clock: Clock, sales: SalesBySku, sku_categories: Callable[[], Mapping[str, str]]
    ) -> None:
        self._clock = clock
        self._sales = sales
        self._sku_categories = sku_categories
        self.current: Mapping[str, float] | None = None
        self._refreshed_wall: float | None = None
        self._refreshes = 0
        self._lines = 0
        self._uncategorised = 0

    async def refresh(self) -> Mapping[str, float] | None:
        """Read the last 7 days' sales and replace ``current`` (one assignment: a decision sees old or new)."""
        now = self._clock.wall()
        rows = await self._sales(now - TRENDS_DAYS * _DAY_S, now)
        current, self._lines, self._uncategorised = shares(rows, self._sku_categories())
        self.current = current
        self._refreshed_wall = now
        self._refreshes += 1
        return current

    def stats(self) -> TrendsStats:
        current, refreshed = self.current, self._refreshed_wall
        return TrendsStats(
            known=current is not None,
            age_s=None if refreshed is None else round(self._clock.wall() - refreshed, 1),
            refreshes=self._refreshes,
            lines=self._lines,
            uncategorised=self._uncategorised,
            categories=0 if current is None else len(current),
        )
