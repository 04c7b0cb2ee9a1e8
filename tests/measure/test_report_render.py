"""report.html from a summary: self-contained, every plot beside a table of its numbers, data as text only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.measure import plots
from edge.measure.render import DASH, INSTALL_HINT, render_html
from tests.measure.report_sample import LOADING, SCRIPT_TITLE, Page, assert_self_contained, sample_summary

REPO = Path(__file__).resolve().parents[2]


def test_the_page_is_self_contained() -> None:
    page = assert_self_contained(render_html(sample_summary()))
    assert page.urls, "the SVGs reference their own markers and clip paths"
    assert page.svgs == 5


def test_titles_from_the_data_are_text() -> None:
    html = render_html(sample_summary())
    assert "<script" not in html.lower()
    page = Page(html)
    assert "script" not in page.tags
    assert page.row("table-uplift", SCRIPT_TITLE)[0] == SCRIPT_TITLE
    assert SCRIPT_TITLE in page.svg_texts  # the plots' labels, escaped by the SVG writer
    # A dollar sign is not mathtext: the title is drawn as written
    assert "Cold drinks: $5 off, $9 for two" in page.svg_texts


def test_each_plot_has_a_table_of_its_numbers() -> None:
    summary = sample_summary()
    page = Page(render_html(summary))
    assert page.row("table-arms", "Cold drinks: $5 off, $9 for two") == [
        "Cold drinks: $5 off, $9 for two",
        "treated",
        "1,500",
        "240",
        "16.00 %",
        "15.00 to 17.20 %",
        "14.00",
        "12.50 to 15.50",
    ]
    assert page.row("table-uplift", "All offers")[1:3] == ["+3.00 pp", "+0.21 to +5.83 pp"]
    assert page.row("table-uplift", "All offers")[-1] == "better than holdout"
    assert page.row("table-uplift", SCRIPT_TITLE)[-1] == "not distinguishable"
    entrance = page.row("table-heatmap", "entrance")
    assert entrance[1:25] == [f"{c:,}" for c in summary["exposures_by_hour_zone"]["counts"][0]]
    assert entrance[25] == f"{sum(summary['exposures_by_hour_zone']['counts'][0]):,}"
    assert page.row("table-ope", "candidate") == [
        "candidate",
        "offers-2026-12-01",
        "8,000",
        "2,150",
        "0.0610 (0.0520 to 0.0700)",
        "0.0605 (0.0530 to 0.0680)",
        "0.0612 (0.0550 to 0.0674)",
    ]
    assert page.row("table-ope-skipped-candidate", "no_context") == ["no_context", "12"]
    assert page.row("table-touchpoints", "device settings for shoppers") == [
        "device settings for shoppers",
        "133",
    ]
    assert page.row("table-attribution-last_touch", "campaign") == ["campaign", "c-winter", "7", "321.00 EUR"]
    assert page.row("table-skipped", "pos_clock_skew") == ["pos_clock_skew", "3"]
    for caption in ("plot-arms", "plot-uplift", "plot-heatmap", "plot-ope", "plot-touchpoints"):
        assert f"{caption}-caption" in page.ids


def test_a_summary_without_candidate_or_holdout_renders_dashes() -> None:
    summary = sample_summary()
    summary["ope"] = None
    empty = {"shoppers": 0, "converted": 0, "rate": None, "rate_ci": None}
    summary["holdout"]["overall"] = {"treated": empty, "holdout": empty, "rate_diff": None}
    summary["holdout"]["offers"] = []
    summary["exposures_by_hour_zone"] = {"zones": [], "hours": list(range(24)), "counts": []}
    page = Page(render_html(summary))
    assert "ope-none" in page.ids
    assert page.svgs == 1  # the touchpoints only: nothing else has a number to draw
    assert page.row("table-uplift", "All offers")[1:] == [DASH] * 5 + ["not enough data"]
    assert page.row("table-heatmap", "No exposure in this period.")


def test_the_same_summary_gives_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    # Ids hashed with a fixed salt, no date in the SVG metadata: a report can be diffed and cached.
    script = (
        "import sys; from edge.measure.render import render_html; "
        "from tests.measure.report_sample import sample_summary; "
        "sys.stdout.write(render_html(sample_summary()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLCONFIGDIR": str(tmp_path)}
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout == render_html(sample_summary())


def test_without_matplotlib_the_tables_remain_and_the_page_says_what_to_install() -> None:
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from edge.measure.render import render_html\n"
        "from tests.measure.report_sample import sample_summary\n"
        "sys.stdout.write(render_html(sample_summary()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    page = Page(done.stdout)
    assert page.svgs == 0
    assert "plots-missing" in page.ids
    assert INSTALL_HINT in done.stdout.replace("&#39;", "'")
    assert page.row("table-arms", "Cold drinks: $5 off, $9 for two")[4] == "16.00 %"


def test_the_period_is_named_in_utc() -> None:
    html = render_html(sample_summary())  # since 2026-11-01T00:00:00+01:00, until 2026-12-01T00:00:00+01:00
    assert "Touches from 2026-10-31 23:00 UTC until 2026-11-30 23:00 UTC;" in html
    assert "Generated 2026-12-07 09:00 UTC." in html


def test_odd_values_are_dashes_not_a_crash() -> None:
    # A summary from a newer or broken producer: null, NaN, text and short rows where numbers belong.
    summary = sample_summary()
    offer = summary["holdout"]["offers"][0]
    offer["treated"]["rate"] = "n/a"
    offer["rate_diff_ci"] = [float("nan"), 0.1]
    summary["exposures_by_hour_zone"]["counts"][1] = [1, 2, "x"]
    summary["ope"]["candidate"]["ips"] = [0.1, None, 0.2]
    summary["touchpoints"]["staff"]["assisting"] = None
    page = Page(render_html(summary))
    arms = page.row("table-arms", "Cold drinks: $5 off, $9 for two")
    assert arms[4] == DASH and arms[5] == "15.00 to 17.20 %"
    assert page.row("table-uplift", "Cold drinks: $5 off, $9 for two")[2:] == [
        DASH,
        "+5.00",
        "-0.50 to +3.25",
        "+2.75 pp",
        "not enough data",
    ]
    assert page.row("table-heatmap", "fitting-rooms") == ["fitting-rooms", "1", "2", DASH, DASH]
    assert page.row("table-ope", "candidate")[4] == DASH
    assert page.row("table-touchpoints", "staff assisting") == ["staff assisting", DASH]
    assert page.svgs == 4  # the heat map is left out: one of its rows is not a row of numbers


_TITLES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(
    lambda text: text.strip() != ""
)


@settings(max_examples=60, deadline=None)
@given(title=_TITLES, zone=_TITLES)
def test_any_title_or_zone_is_text_in_the_tables(title: str, zone: str) -> None:
    summary = sample_summary()
    summary["holdout"]["offers"][1]["title"] = title
    summary["exposures_by_hour_zone"]["zones"][0] = zone
    page = Page(render_html(summary, with_plots=False))
    assert not LOADING & set(page.tags)
    name = " ".join(title.split())
    assert page.row("table-uplift", name)[0] == name
    assert page.tables["table-heatmap"][1][0] == " ".join(zone.split())


@settings(max_examples=10, deadline=None)
@given(title=_TITLES)
def test_any_title_is_text_in_the_plots(title: str) -> None:
    summary = sample_summary()
    summary["holdout"]["offers"] = [{**summary["holdout"]["offers"][0], "title": title}]
    svg = plots.uplift_forest(summary)
    assert svg is not None
    page = Page(svg)
    assert not LOADING & set(page.tags)
    assert plots.label(title) in page.svg_texts
