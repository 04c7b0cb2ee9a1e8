"""The measurement report as one self-contained HTML page (``report.html`` of ``edge-gateway report``).

The summary dict (``edge/measure/summary.py``) in, one page out: every plot is inline SVG (``plots.py``,
matplotlib, the ``report`` extra) beside a table of the same numbers, which is what a screen reader and the
tests read. Without matplotlib the page has the tables and says how to get the plots. Jinja2 with autoescaping:
an offer's title is text, never markup. No script, no stylesheet or font to fetch: it opens from a file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

import jinja2
from markupsafe import Markup

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'edge-gateway[report]'"
DASH: Final = "\u2013"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        return None
    low, high = _number(value[0]), _number(value[1])
    return None if low is None or high is None else (low, high)


def count(value: Any) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:,.0f}"


def percent(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return DASH if number is None else f"{100.0 * number:.{digits}f} %"


def percent_ci(value: Any, digits: int = 1) -> str:
    pair = _pair(value)
    return DASH if pair is None else f"{100.0 * pair[0]:.{digits}f} to {100.0 * pair[1]:.{digits}f} %"


def points(value: Any, digits: int = 2) -> str:
    """A difference of rates in percentage points, signed."""
    number = _number(value)
    return DASH if number is None else f"{100.0 * number:+.{digits}f} pp"


def points_ci(value: Any, digits: int = 2) -> str:
    pair = _pair(value)
    return DASH if pair is None else f"{100.0 * pair[0]:+.{digits}f} to {100.0 * pair[1]:+.{digits}f} pp"


def money(value: Any, currency: str | None = None, signed: bool = False) -> str:
    number = _number(value)
    if number is None:
        return DASH
    text = f"{number:+,.2f}" if signed else f"{number:,.2f}"
    return f"{text} {currency}" if currency else text


def money_ci(value: Any, currency: str | None = None, signed: bool = False) -> str:
    pair = _pair(value)
    if pair is None:
        return DASH
    low, high = (money(x, None, signed) for x in pair)
    return f"{low} to {high}" + (f" {currency}" if currency else "")


def estimate(value: Any, digits: int = 4) -> str:
    """An OPE estimate ``[value, low, high]`` as ``value (low to high)``."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3:
        return DASH
    numbers = [_number(x) for x in value]
    if None in numbers:
        return DASH
    v, low, high = numbers
    return f"{v:.{digits}f} ({low:.{digits}f} to {high:.{digits}f})"


def when(value: Any) -> str:
    """An ISO-8601 instant of the summary as ``2026-11-01 09:00 UTC`` (as given if it is not one)."""
    if not isinstance(value, str):
        return DASH
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if stamp.tzinfo is None:
        return value
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def verdict(interval: Any) -> str:
    """Whether a difference's interval lies above zero, below it, or spans it."""
    pair = _pair(interval)
    if pair is None:
        return "not enough data"
    if pair[0] > 0:
        return "better than holdout"
    if pair[1] < 0:
        return "worse than holdout"
    return "not distinguishable"


_ENV: Final = jinja2.Environment(
    autoescape=True, undefined=jinja2.ChainableUndefined, keep_trailing_newline=True, trim_blocks=True
)
_ENV.filters.update(
    count=count,
    percent=percent,
    percent_ci=percent_ci,
    points=points,
    points_ci=points_ci,
    money=money,
    money_ci=money_ci,
    estimate=estimate,
    verdict=verdict,
    when=when,
)
_PAGE: Final = _ENV.from_string(
    resources.files("edge.measure").joinpath("report.html.j2").read_text(encoding="utf-8")
)


def plots_available() -> bool:
    """Whether matplotlib (the ``report`` extra) can be imported here."""
    try:
        from edge.measure import plots  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _plots(summary: Mapping[str, Any]) -> dict[str, str | None] | None:
    """Each section's SVG, or None when matplotlib (the ``report`` extra) is not installed."""
    try:
        from edge.measure import plots  # noqa: PLC0415 - matplotlib only when a report is drawn
    except ImportError as exc:
        log.info("no plots in the report (%s): %s", exc, INSTALL_HINT)
        return None
    return plots.all_plots(summary)


def _heat_rows(summary: Mapping[str, Any]) -> list[tuple[str, list[Any], float | None]]:
    """The heat map's table: (zone, its hourly counts, their total: None if one is not a number)."""
    grid = summary.get("exposures_by_hour_zone")
    if not isinstance(grid, Mapping):
        return []
    zones, counts = grid.get("zones") or [], grid.get("counts") or []
    rows = []
    for zone, given in zip(zones, counts, strict=False):
        cells = list(given) if isinstance(given, Sequence) and not isinstance(given, str) else []
        numbers = [_number(cell) for cell in cells]
        total = None if None in numbers else sum(n for n in numbers if n is not None)
        rows.append((str(zone), cells, total))
    return rows


def render_html(summary: Mapping[str, Any], *, with_plots: bool = True) -> str:
    """The summary as one HTML page; the plots only with matplotlib installed and ``with_plots``."""
    drawn = _plots(summary) if with_plots else None
    svgs = {name: Markup(svg) for name, svg in (drawn or {}).items() if svg}  # noqa: S704 - matplotlib's own SVG, text escaped by its writer
    return _PAGE.render(
        s=summary,
        heat_rows=_heat_rows(summary),
        plots=svgs,
        plots_missing=with_plots and drawn is None,
        install_hint=INSTALL_HINT,
    )
