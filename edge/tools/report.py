"""``edge-gateway report``: what the store's touchpoints achieved, as ``summary.json`` and ``report.html``.

Reads the ledger beside a running gateway, read-only (``edge/ledger/readonly.py``), aggregates it
(``edge/measure/summary.py``; with ``--candidate``, the off-policy evaluation of a candidate model too) and
writes both files into ``--out``, each replaced atomically. Dates: ``YYYY-MM-DD`` is a day in the store's time
zone (``[decisions.policy] tz``): ``--since`` from its first instant, ``--until`` through its last, so
``--since 2026-11-01 --until 2026-11-30`` is November. An ISO-8601 time with an offset (``…Z``, ``…+01:00``)
is that instant; without one, the store's local time; ``--until`` is then exclusive. docs/measurement.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

from edge.clock import Clock, SystemClock
from edge.config import GatewaySettings
from edge.decide.catalog import Catalog, CatalogError
from edge.decide.manifest import ModelError
from edge.fsutil import write_atomic
from edge.ledger.readonly import READ_ERRORS, read_only
from edge.tools import settings_for_tool, store_catalog

SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.html"
# A report longer than this is a mistake (a year typed for a month) or needs a bigger machine than a store's.
MAX_PERIOD_DAYS: Final = 400


class ArgumentError(ValueError):
    """A bad command-line argument: the message says which and why (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Period:
    since: float  # unix seconds, inclusive
    until: float  # unix seconds, exclusive


def _instant(text: str, zone: ZoneInfo, *, end_of_day: bool, name: str) -> float:
    text = text.strip()
    try:
        if len(text) == 10:  # YYYY-MM-DD: a day in the store's time zone
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=zone)
        return stamp.timestamp()
    except (ValueError, OverflowError):  # not a date or time; or one past the calendar's end (9999-12-31)
        msg = f"{name}: {text!r} is neither a date (YYYY-MM-DD) nor an ISO-8601 time (2026-11-01T09:00:00Z)"
        raise ArgumentError(msg) from None


def parse_period(since: str, until: str, tz: str) -> Period:
    """The report's period ``[since, until)`` from the command line, in unix seconds; ``ArgumentError`` if bad."""
    zone = ZoneInfo(tz)
    period = Period(
        _instant(since, zone, end_of_day=False, name="--since"),
        _instant(until, zone, end_of_day=True, name="--until"),
    )
    if period.until <= period.since:
        msg = f"--until ({until}) must be after --since ({since})"
        raise ArgumentError(msg)
    if period.until - period.since > MAX_PERIOD_DAYS * 86_400:
        msg = f"the period is longer than {MAX_PERIOD_DAYS} days: report on shorter periods"
        raise ArgumentError(msg)
    return period


# The off-policy evaluation's part of the summary (``{"candidate": EST, "running": EST}``) for a candidate
# model over the period: ``(settings, ledger connection, candidate model, period, catalog) -> part``.
OpeFn = Callable[[GatewaySettings, Any, Path, Period, Catalog], Mapping[str, Any]]


def _arguments(
    settings: GatewaySettings,
    since: str,
    until: str,
    out_dir: Path,
    candidate: Path | None,
    ope: OpeFn | None,
) -> tuple[Period, OpeFn | None]:
    """The period and the evaluation to run, or ``ArgumentError`` saying which argument is wrong."""
    period = parse_period(since, until, settings.decisions.policy.tz)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArgumentError(f"--out: {out_dir} is a file, not a folder")
    if candidate is None:
        return period, None
    if not candidate.is_file():
        raise ArgumentError(f"--candidate: no model file at {candidate}")
    if ope is None:
        from edge.measure.ope import report_part  # noqa: PLC0415 - onnxruntime only with --candidate

        ope = report_part
    return period, ope


def write_report(
    settings: GatewaySettings,
    period: Period,
    out_dir: Path,
    *,
    now: float,
    candidate: Path | None = None,
    ope: OpeFn | None = None,
    with_plots: bool = True,
) -> Path:
    """``summary.json`` and ``report.html`` of the ledger at ``[ledger] path`` over ``period``, written into
    ``out_dir`` (made if missing); returns the page's path. Raises ``READ_ERRORS`` (the ledger),
    ``CatalogError`` (the offers file) and ``OSError`` (writing)."""
    from edge.measure.render import render_html  # noqa: PLC0415 - Jinja2 and the template only here
    from edge.measure.summary import build_summary  # noqa: PLC0415

    with read_only(settings.ledger.path) as conn:
        catalog = store_catalog(conn, settings.decisions.offers_file)
        part = None
        if candidate is not None and ope is not None:
            part = ope(settings, conn, candidate, period, catalog)
        summary = build_summary(
            conn,
            store=settings.store.id,
            since=period.since,
            until=period.until,
            offers=catalog.offers,
            settings=settings.measurement,
            generated_at=now,
            tz=settings.decisions.policy.tz,
            titles={offer.id: offer.title for offer in catalog.offers},
            ope=part,
        )
    # Strict JSON: a non-finite number would be a bug of the summary, not something to write as NaN.
    document = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    page = render_html(summary, with_plots=with_plots)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / SUMMARY_FILE, document.encode())
    write_atomic(out_dir / REPORT_FILE, page.encode())
    return out_dir / REPORT_FILE


def run(
    config: Path,
    since: str,
    until: str,
    out_dir: Path,
    out: TextIO,
    err: TextIO,
    *,
    candidate: Path | None = None,
    clock: Clock | None = None,
    with_plots: bool = True,
    ope: OpeFn | None = None,
) -> int:
    """``edge-gateway report --config F --since D --until D --out DIR [--candidate MODEL.onnx]``."""
    from edge.measure.render import INSTALL_HINT, plots_available  # noqa: PLC0415

    settings = settings_for_tool(config, err)
    if settings is None:
        return 1
    try:
        period, evaluate = _arguments(settings, since, until, out_dir, candidate, ope)
    except ArgumentError as exc:
        print(f"report: {exc}", file=err)
        return 2
    now = (clock or SystemClock()).wall()
    try:
        page = write_report(
            settings, period, out_dir, now=now, candidate=candidate, ope=evaluate, with_plots=with_plots
        )
    except ModelError as exc:
        print(f"report: --candidate: {exc}", file=err)
        return 2
    except CatalogError as exc:
        print(f"report: {exc}", file=err)
        return 1
    except READ_ERRORS as exc:  # OSError included: the ledger unreadable or the folder unwritable
        print(f"report: cannot read {settings.ledger.path} or write into {out_dir} ({exc})", file=err)
        return 1
    if with_plots and not plots_available():
        print(f"report: tables only; the plots need matplotlib ({INSTALL_HINT})", file=err)
    print(f"wrote {page} and {out_dir / SUMMARY_FILE}", file=out)
    return 0
