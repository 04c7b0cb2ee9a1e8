"""The report's plots as inline SVG (matplotlib, the `report` extra): one function per plot, each from the summary.

Only this module imports matplotlib, and only when a report is rendered: a store's Pi need not install it
(``edge/measure/render.py`` writes the tables without it). The output is deterministic for the same summary:
text stays text (``svg.fonttype = none``: no glyphs, no fonts embedded or fetched), ids are hashed with a fixed
salt and prefixed per plot (several SVGs share one page), and the file carries no date or creator metadata.
Labels are drawn as given: mathtext is off, so an offer titled ``$5 off`` is not parsed as a formula, and the
SVG writer escapes every text node.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Settings in force while a plot is drawn and written (a context, never the process's global rcParams).
_RC: Final[dict[RcKeyType, Any]] = {
    "svg.fonttype": "none",  # text as <text>: searchable, small, and no font embedded
    "svg.hashsalt": "edge-report",  # the ids of clip paths and markers are hashes: the same every run
    "text.parse_math": False,  # titles come from the catalog: "$5 off" is text, not mathtext
    "text.usetex": False,
    "font.family": "DejaVu Sans",  # shipped inside matplotlib: nothing looked up or downloaded
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# No <metadata> block: no date (the same summary gives the same bytes) and no creator URL.
_METADATA: Final = {"Date": None, "Creator": None, "Format": None, "Type": None}
# A plot label longer than this is cut with an ellipsis; the table beside the plot holds the full title.
LABEL_MAX: Final = 36
TREATED_COLOUR: Final = "#1f6feb"
HOLDOUT_COLOUR: Final = "#8c959f"
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def label(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "\u2026"


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    with matplotlib.rc_context(_RC):
        yield Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element for inline use: no XML prolog or doctype, ids unique to ``prefix``."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC), warnings.catch_warnings():
        # A title in a script DejaVu lacks (CJK, emoji) is still written as text, which the browser draws
        # with its own fonts; only matplotlib's layout guesses its width. Not worth a warning per glyph.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        figure.savefig(buffer, format="svg", metadata=_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    return text.replace("<svg ", f'<svg role="img" aria-labelledby="{prefix}-caption" ', 1)


def _rows(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, ARM) for the overall comparison, then each offer."""
    holdout = summary.get("holdout") or {}
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if holdout.get("overall"):
        rows.append(("All offers", holdout["overall"]))
    for offer in holdout.get("offers") or ():
        rows.append((label(offer.get("title") or offer.get("offer_id") or "?"), offer))
    return rows


def _finite(value: Any) -> float | None:
    """A finite number of the summary, or None (null, NaN, text: nothing to draw)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _numbers(values: Any, size: int) -> list[float] | None:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != size:
        return None
    numbers = [_finite(v) for v in values]
    return None if None in numbers else [n for n in numbers if n is not None]


def _ci(value: Any, interval: Any) -> tuple[float, float, float] | None:
    """(value, below, above) for an error bar, or None when the summary has no number for it."""
    centre, bounds = _finite(value), _numbers(interval, 2)
    if centre is None or bounds is None:
        return None
    return centre, max(0.0, centre - bounds[0]), max(0.0, bounds[1] - centre)


def conversion_by_arm(summary: Mapping[str, Any]) -> str | None:
    """Conversion rate of the treated and the holdout shoppers, overall and per offer, with 95 % CI bars."""
    rows = _rows(summary)
    arms: list[tuple[float, str, str, list[tuple[int, tuple[float, float, float]]]]] = []
    for offset, arm, colour in ((-0.18, "treated", TREATED_COLOUR), (0.18, "holdout", HOLDOUT_COLOUR)):
        bars = [
            (index, bar)
            for index, (_, row) in enumerate(rows)
            if (bar := _ci((row.get(arm) or {}).get("rate"), (row.get(arm) or {}).get("rate_ci")))
        ]
        arms.append((offset, arm, colour, bars))
    if not any(bars for *_, bars in arms):
        return None
    with _figure(7.0, 1.2 + 0.55 * len(rows)) as figure:
        ax: Axes = figure.add_subplot()
        for offset, arm, colour, bars in arms:
            ys = [index + offset for index, _ in bars]
            values = [100.0 * bar[0] for _, bar in bars]
            below = [100.0 * bar[1] for _, bar in bars]
            above = [100.0 * bar[2] for _, bar in bars]
            ax.barh(ys, values, height=0.34, color=colour, label=arm)
            ax.errorbar(values, ys, xerr=[below, above], fmt="none", ecolor="#24292f", capsize=3, lw=1)
        ax.set_yticks(range(len(rows)), [name for name, _ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("conversion rate (%), 95 % interval")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        return _svg(figure, "plot-arms")


def uplift_forest(summary: Mapping[str, Any]) -> str | None:
    """Treated minus holdout conversion rate per offer (points) with its 95 % interval, and the zero line."""
    rows = [(name, _ci(row.get("rate_diff"), row.get("rate_diff_ci"))) for name, row in _rows(summary)]
    shown = [(name, point) for name, point in rows if point is not None]
    if not shown:
        return None
    with _figure(7.0, 1.2 + 0.45 * len(shown)) as figure:
        ax: Axes = figure.add_subplot()
        for index, (_, (value, below, above)) in enumerate(shown):
            marker = "D" if index == 0 and shown[0][0] == "All offers" else "o"
            ax.errorbar(
                [100.0 * value],
                [index],
                xerr=[[100.0 * below], [100.0 * above]],
                fmt=marker,
                color=TREATED_COLOUR,
                ecolor="#24292f",
                capsize=3,
                lw=1,
            )
        ax.axvline(0.0, color="#cf222e", lw=1, ls="--")
        ax.set_yticks(range(len(shown)), [name for name, _ in shown])
        ax.set_ylim(len(shown) - 0.5, -0.5)
        ax.set_xlabel("uplift in conversion rate (percentage points), 95 % interval")
        return _svg(figure, "plot-uplift")


def exposure_heatmap(summary: Mapping[str, Any]) -> str | None:
    """Acked exposures per hour of the day (the store's time zone) and zone, as a heat map."""
    grid = summary.get("exposures_by_hour_zone") or {}
    zones = [label(zone) for zone in grid.get("zones") or ()]
    hours = list(grid.get("hours") or range(24))
    rows = [_numbers(row, len(hours)) for row in grid.get("counts") or ()]
    counts = [row for row in rows if row is not None]
    if not zones or len(counts) != len(zones) or len(rows) != len(zones):
        return None
    with _figure(7.0, 1.3 + 0.32 * len(zones)) as figure:
        ax: Axes = figure.add_subplot()
        # Vector cells (pcolormesh), not imshow's embedded PNG: the SVG stays text and paths only.
        image = ax.pcolormesh(counts, cmap="Blues", edgecolors="none")
        ax.invert_yaxis()
        ax.set_yticks([index + 0.5 for index in range(len(zones))], zones)
        ax.set_xticks([hour + 0.5 for hour in range(len(hours))], [str(hour) for hour in hours], fontsize=7)
        ax.tick_params(length=0)
        ax.set_xlabel("hour of the day (store time)")
        scale = figure.colorbar(image, ax=ax, label="exposures", shrink=0.9)
        if scale.solids is not None:
            scale.solids.set_rasterized(False)  # matplotlib rasterises a long colour bar into a PNG
            scale.solids.set_edgecolor("face")  # no hairlines between the bar's vector cells
        return _svg(figure, "plot-heatmap")


OPE_ESTIMATORS: Final = ("ips", "snips", "dr")


def ope_estimates(summary: Mapping[str, Any]) -> str | None:
    """The candidate's and the running model's estimated value per estimator (IPS, SNIPS, DR), with intervals."""
    ope = summary.get("ope")
    if not ope:
        return None
    with _figure(7.0, 2.6) as figure:
        ax: Axes = figure.add_subplot()
        drawn = False
        for offset, key, colour in ((-0.15, "running", HOLDOUT_COLOUR), (0.15, "candidate", TREATED_COLOUR)):
            estimate = ope.get(key) or {}
            for index, name in enumerate(OPE_ESTIMATORS):
                triple = _numbers(estimate.get(name), 3)
                if triple is None:
                    continue
                value, low, high = triple
                ax.errorbar(
                    [value],
                    [index + offset],
                    xerr=[[max(0.0, value - low)], [max(0.0, high - value)]],
                    fmt="o",
                    color=colour,
                    ecolor=colour,
                    capsize=3,
                    lw=1,
                    label=f"{key} (ESS {_finite(estimate.get('ess')) or 0:,.0f})" if index == 0 else None,
                )
                drawn = True
        if not drawn:
            return None
        ax.set_yticks(range(len(OPE_ESTIMATORS)), [name.upper() for name in OPE_ESTIMATORS])
        ax.set_ylim(len(OPE_ESTIMATORS) - 0.5, -0.5)
        ax.set_xlabel("estimated conversions per decision, 95 % interval")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        return _svg(figure, "plot-ope")


def touchpoint_counts(summary: Mapping[str, Any]) -> str | None:
    """Staff answers (assisting, dismissed) and device settings (all, for shoppers) as bars."""
    touch = summary.get("touchpoints") or {}
    staff = touch.get("staff") or {}
    devices = touch.get("devices") or {}
    given = [
        ("staff assisting", staff.get("assisting")),
        ("staff dismissed", staff.get("dismissed")),
        ("device settings", devices.get("settings")),
        ("device settings for shoppers", devices.get("for_shoppers")),
    ]
    bars = [(name, int(number)) for name, value in given if (number := _finite(value)) is not None]
    if not bars:
        return None
    with _figure(7.0, 0.9 + 0.4 * len(bars)) as figure:
        ax: Axes = figure.add_subplot()
        ax.barh(range(len(bars)), [value for _, value in bars], color=TREATED_COLOUR, height=0.6)
        for index, (_, value) in enumerate(bars):
            ax.annotate(f"{value:,}", (value, index), xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_yticks(range(len(bars)), [name for name, _ in bars])
        ax.invert_yaxis()
        ax.set_xlabel("count in the period")
        return _svg(figure, "plot-touchpoints")


def all_plots(summary: Mapping[str, Any]) -> dict[str, str | None]:
    """Every plot of the report by its section's name; None where the summary holds nothing to draw."""
    return {
        "arms": conversion_by_arm(summary),
        "uplift": uplift_forest(summary),
        "heatmap": exposure_heatmap(summary),
        "ope": ope_estimates(summary),
        "touchpoints": touchpoint_counts(summary),
    }
