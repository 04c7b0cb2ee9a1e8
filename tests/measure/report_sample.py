"""For the report's tests: a summary of the documented shape (docs/measurement.md), no ledger needed, and a
reader of report.html (its tables, ids, URLs and SVG texts) with the check that it is self-contained."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from typing import Any

SCRIPT_TITLE = "<script>alert('x')</script> & more"


def _arm(shoppers: int, converted: int, revenue: float) -> dict[str, Any]:
    rate = converted / shoppers
    return {
        "shoppers": shoppers,
        "converted": converted,
        "rate": rate,
        "rate_ci": [max(0.0, rate - 0.01), rate + 0.012],
        "revenue_per_shopper": revenue,
        "revenue_ci": [revenue - 1.5, revenue + 1.5],
    }


def _comparison(treated: dict[str, Any], holdout: dict[str, Any], diff_ci: list[float]) -> dict[str, Any]:
    return {
        "treated": treated,
        "holdout": holdout,
        "rate_diff": treated["rate"] - holdout["rate"],
        "rate_diff_ci": diff_ci,
        "revenue_diff": treated["revenue_per_shopper"] - holdout["revenue_per_shopper"],
        "revenue_diff_ci": [-0.5, 3.25],
        "mde_rate": 0.0275,
    }


_SAMPLE: dict[str, Any] = {
    "v": 1,
    "store": "store-042",
    "since": "2026-11-01T00:00:00+01:00",
    "until": "2026-12-01T00:00:00+01:00",
    "generated_at": "2026-12-07T09:00:00Z",
    "window_days": 14,
    "currency": "EUR",
    "method": {
        "rate_ci": "Wilson score interval",
        "difference_ci": "Newcombe hybrid score interval (method 10)",
        "revenue_ci": "Welch standard error, normal interval",
        "confidence": 0.95,
    },
    "counts": {
        "decisions": 12_345,
        "exposures": 10_020,
        "conversions": 2_001,
        "identified_conversions": 1_203,
        "skipped": {"pos_clock_skew": 3, "negative_total": 2, "exposure_without_decision": 1},
    },
    "holdout": {
        "overall": _comparison(_arm(4000, 480, 12.5), _arm(400, 36, 10.25), [0.0021, 0.0583]),
        "offers": [
            {
                "offer_id": "cold-drinks",
                "title": "Cold drinks: $5 off, $9 for two",
                **_comparison(_arm(1500, 240, 14.0), _arm(150, 12, 9.0), [0.0305, 0.1124]),
            },
            {
                "offer_id": "socks",
                "title": SCRIPT_TITLE,
                **_comparison(_arm(1200, 96, 8.0), _arm(120, 10, 8.1), [-0.0512, 0.0431]),
            },
        ],
    },
    "attribution": {
        "last_touch": [
            {"touchpoint": "offer", "id": "cold-drinks", "conversions": 210, "revenue": 3150.5},
            {"touchpoint": "staff", "id": "fitting", "conversions": 12, "revenue": 640.0},
            {"touchpoint": "device", "id": "fitting-light", "conversions": 4, "revenue": 99.9},
            {"touchpoint": "campaign", "id": "c-winter", "conversions": 7, "revenue": 321.0},
        ],
        "any_touch": [
            {"touchpoint": "offer", "id": "cold-drinks", "conversions": 260, "revenue": 3900.0},
            {"touchpoint": "offer", "id": "socks", "conversions": 90, "revenue": 720.0},
            {"touchpoint": "staff", "id": "fitting", "conversions": 20, "revenue": 910.0},
        ],
    },
    "exposures_by_hour_zone": {
        "zones": ["entrance", "fitting-rooms", "cafe"],
        "hours": list(range(24)),
        "counts": [
            [0] * 8 + [10, 40, 80, 120, 150, 140, 110, 100, 130, 160, 120, 60, 20] + [0] * 3,
            [0] * 9 + [5, 12, 20, 25, 30, 28, 22, 18, 25, 30, 15, 4] + [0] * 3,
            [0] * 7 + [30, 90, 60, 20, 15, 70, 90, 40, 20, 20, 30, 10, 5] + [0] * 4,
        ],
    },
    "touchpoints": {
        "staff": {"assisting": 57, "dismissed": 9},
        "devices": {"settings": 412, "for_shoppers": 133},
    },
    "ope": {
        "candidate": {
            "model_version": "offers-2026-12-01",
            "n": 8000,
            "ess": 2150.4,
            "ips": [0.061, 0.052, 0.070],
            "snips": [0.0605, 0.053, 0.068],
            "dr": [0.0612, 0.055, 0.0674],
            "skipped": {"no_context": 12, "offer_gone": 3},
        },
        "running": {
            "model_version": "offers-2026-11-01",
            "n": 8000,
            "ess": 8000.0,
            "ips": [0.048, 0.043, 0.053],
            "snips": [0.048, 0.043, 0.053],
            "dr": [0.048, 0.044, 0.052],
            "skipped": {},
        },
    },
}


def sample_summary() -> dict[str, Any]:
    """A fresh copy: a test may change it."""
    return copy.deepcopy(_SAMPLE)


# Elements that would load something or run something: a self-contained page has none.
LOADING = {"script", "link", "iframe", "img", "object", "embed", "audio", "video", "source", "base", "image"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "data", "poster", "srcset", "formaction"}


class Page(HTMLParser):
    """The parts of the page the tests read: elements, ids, URL-valued attributes, tables, SVG texts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.styles: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.svg_texts: list[str] = []
        self.svgs = 0
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_style = False
        self._in_svg_text = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        self.urls += [str(v) for k, v in attrs if k in URL_ATTRIBUTES and v is not None]
        if values.get("style"):
            self.styles.append(str(values["style"]))
        if tag == "svg":
            self.svgs += 1
        elif tag == "table":
            self._table = str(values.get("id"))
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "style":
            self._in_style = True
        elif tag == "text":
            self._in_svg_text = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "style":
            self._in_style = False
        elif tag == "text":
            self._in_svg_text = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)
        if self._in_svg_text:
            self.svg_texts.append(data)

    def row(self, table: str, first: str) -> list[str]:
        (found,) = [row for row in self.tables[table] if row and row[0] == first]
        return found


def assert_self_contained(html: str) -> Page:
    """Nothing on the page loads or runs anything: no script, stylesheet, image or frame, every URL-valued
    attribute a reference inside the page, ids unique (several inline SVGs share the page)."""
    page = Page(html)
    assert not LOADING & set(page.tags)
    assert all(url.startswith("#") for url in page.urls), [u for u in page.urls if not u.startswith("#")]
    styles = " ".join(page.styles)
    assert "@import" not in styles
    assert "url(" not in styles.replace("url(#", "")
    assert len(page.ids) == len(set(page.ids))
    assert {f"#{i}" for i in page.ids} >= set(page.urls)
    return page
