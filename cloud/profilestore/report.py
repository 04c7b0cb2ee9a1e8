"""The chain's cross-channel report: its JSON document and its table (pure), and ``profile-store report``.

Rows are the channel and touchpoint a sale was attributed to (store offer, online campaign), columns the
channel of the sale (store, online); last touch and any touch (docs/profile-store.md, "Online and offline
together"). The aggregation is SQL's (``profilestore.sqlcross``); this module only shapes what it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from profilestore.const import DEFAULT_ATTRIBUTION_DAYS, MAX_ATTRIBUTION_DAYS
from profilestore.models import parse_timestamp, render_timestamp
from profilestore.storage import CrossRow, CrossTotals

FORMAT: Final = "profilestore-cross-channel/1"
CHANNELS: Final = ("store", "online")
# The rows of the table, always in this order (a row with nothing attributed shows zeros).
TOUCHPOINTS: Final = (("store", "offer"), ("online", "campaign"))
BASES: Final = ("last_touch", "any_touch")
_DAY_US: Final = 86_400 * 1_000_000
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_bound(text: str, *, end: bool) -> int:
    """Microseconds of a report bound: an RFC 3339 date-time, or a date (UTC): its start for ``--since``,
    the end of that day for ``--until`` (so ``--until 2026-11-30`` includes the 30th). ValueError if neither."""
    if _DATE.fullmatch(text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise ValueError(f"{text!r}: not a valid date") from exc
        if end:
            day += timedelta(days=1)
        return (day - _EPOCH) // timedelta(microseconds=1)
    return parse_timestamp(text)


def window_us(days: float) -> int:
    """The attribution window in microseconds; ValueError outside (0, MAX_ATTRIBUTION_DAYS]."""
    if not 0 < days <= MAX_ATTRIBUTION_DAYS:
        raise ValueError(f"attribution days: more than 0 and at most {MAX_ATTRIBUTION_DAYS}")
    return round(days * _DAY_US)


def _cell(rows: Sequence[CrossRow], basis: str, channel: str, touchpoint: str, to: str) -> dict[str, Any]:
    for row in rows:
        key = (row.basis, row.from_channel, row.touchpoint, row.ref_id, row.to_channel)
        if key == (basis, channel, touchpoint, None, to):
            return {"conversions": row.conversions, "revenue": round(row.revenue, 2)}
    return {"conversions": 0, "revenue": 0.0}


def build_report(
    rows: Sequence[CrossRow],
    totals: CrossTotals,
    *,
    since_us: int,
    until_us: int,
    attribution_days: float,
    generated_us: int,
) -> dict[str, Any]:
    """The report's JSON document (docs/profile-store.md lists every field)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "since": render_timestamp(since_us),
        "until": render_timestamp(until_us),
        "generated_at": render_timestamp(generated_us),
        "attribution_days": attribution_days,
        "currencies": list(totals.currencies),
        "counts": {
            "sales": {channel: totals.sales.get(channel, 0) for channel in CHANNELS},
            "identified_sales": {channel: totals.identified_sales.get(channel, 0) for channel in CHANNELS},
            "touches": {touchpoint: totals.touches.get(touchpoint, 0) for _, touchpoint in TOUCHPOINTS},
            "skipped": dict(totals.skipped),
        },
    }
    for basis in BASES:
        document[basis] = [
            {
                "from": channel,
                "touchpoint": touchpoint,
                "to": {to: _cell(rows, basis, channel, touchpoint, to) for to in CHANNELS},
            }
            for channel, touchpoint in TOUCHPOINTS
        ]
        document[f"{basis}_by_id"] = [
            {
                "from": row.from_channel,
                "touchpoint": row.touchpoint,
                "id": row.ref_id,
                "to": row.to_channel,
                "conversions": row.conversions,
                "revenue": round(row.revenue, 2),
            }
            for row in rows
            if row.basis == basis and row.ref_id is not None
        ]
    return document


def render_table(document: dict[str, Any]) -> str:
    """The report as text: one table per basis, rows from, columns to (conversions and revenue)."""
    currency = "/".join(document["currencies"]) or "-"
    lines = [
        f"cross-channel attribution {document['since']} .. {document['until']}"
        f" (window {document['attribution_days']:g} days; revenue in {currency})",
    ]
    counts = document["counts"]
    lines.append(
        "sales: "
        + ", ".join(
            f"{channel} {counts['sales'][channel]} ({counts['identified_sales'][channel]} identified)"
            for channel in CHANNELS
        )
        + "; touches: "
        + ", ".join(f"{name} {count}" for name, count in counts["touches"].items())
    )
    if counts["skipped"]:
        lines.append("skipped: " + ", ".join(f"{reason} {n}" for reason, n in counts["skipped"].items()))
    header = f"{'from':<18}" + "".join(f"{'-> ' + to:>14}{'revenue':>12}" for to in CHANNELS)
    for basis in BASES:
        lines += ["", basis.replace("_", " "), header]
        for row in document[basis]:
            cells = "".join(
                f"{row['to'][to]['conversions']:>14}{row['to'][to]['revenue']:>12.2f}" for to in CHANNELS
            )
            lines.append(f"{row['from'] + ' ' + row['touchpoint']:<18}{cells}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-store report",
        description="The chain's cross-channel table: store offers and online campaigns -> store and online"
        " sales (last touch and any touch), read from the profile store's database",
    )
    parser.add_argument("--db", required=True, help="the profile store's database (as `profile-store --db`)")
    parser.add_argument("--since", required=True, help="first day (UTC) or RFC 3339 instant of the sales")
    parser.add_argument(
        "--until", required=True, help="last day (UTC, included) or RFC 3339 instant (excluded)"
    )
    parser.add_argument(
        "--attribution-days",
        type=float,
        default=DEFAULT_ATTRIBUTION_DAYS,
        metavar="DAYS",
        help=f"a sale is attributed to touches at most this long before it (default {DEFAULT_ATTRIBUTION_DAYS})",
    )
    parser.add_argument("--format", choices=["table", "json"], default="table")
    return parser


async def _read(url: str, since_us: int, until_us: int, window: int) -> tuple[list[CrossRow], CrossTotals]:
    from profilestore.storage import open_storage  # noqa: PLC0415 - the database drivers only when run

    async with open_storage(url) as storage:
        return await storage.cross_channel(since_us, until_us, window)


def run_report(argv: Sequence[str], *, now_wall: float | None = None) -> int:
    """``profile-store report ARGS``: prints the report; 2 on a bad argument or an unreachable database."""
    from profilestore.cli import CliError, check_database  # noqa: PLC0415 - cli imports this module lazily
    from profilestore.clock import SystemClock  # noqa: PLC0415
    from profilestore.schema import SchemaTooNewError  # noqa: PLC0415
    from profilestore.storage import StorageUnavailableError  # noqa: PLC0415

    args = build_parser().parse_args(list(argv))
    try:
        check_database(args.db)
        since_us = parse_bound(args.since, end=False)
        until_us = parse_bound(args.until, end=True)
        window = window_us(args.attribution_days)
    except (CliError, ValueError) as exc:
        print(f"profile-store report: {exc}", file=sys.stderr)
        return 2
    if until_us <= since_us:
        print("profile-store report: --until must be after --since", file=sys.stderr)
        return 2
    try:
        rows, totals = asyncio.run(_read(args.db, since_us, until_us, window))
    except (StorageUnavailableError, SchemaTooNewError, OSError) as exc:
        print(f"profile-store report: {exc}", file=sys.stderr)
        return 2
    wall = SystemClock().wall() if now_wall is None else now_wall
    document = build_report(
        rows,
        totals,
        since_us=since_us,
        until_us=until_us,
        attribution_days=args.attribution_days,
        generated_us=round(wall * 1_000_000),
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(document))
    return 0
