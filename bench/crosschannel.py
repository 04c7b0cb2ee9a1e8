"""crosschannel: the reference cloud's cross-channel report over a month of a chain (issue 16, section 3).

A fresh database (SQLite in a temporary folder, or PostgreSQL with ``--pg``) is filled with ``--shoppers``
shoppers, ``--touches`` touches (70% offers shown in 50 stores, 30% online campaigns, each promoting 2 SKUs
of one of 8 categories) and ``--sales`` sales (60% in stores, 40% online, 1..4 lines of 2,000 SKUs), spread
over 30 days; then the report (``Storage.cross_channel``, the same call as ``profile-store report``) runs
``--repeats`` times over the whole month with a 14-day window. Reported: seconds per report, min / median /
max, the attributed conversions (a sanity check), and the process's peak RSS (after the fill, whose generated
rows dominate it, and after the reports). The baseline in the same run
is the plain count of the window's sales (``SELECT COUNT(*)``, what any report reads at least).

    python -m bench.crosschannel [--shoppers 50000] [--touches 200000] [--sales 100000] [--repeats 5] [--pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from profilestore.sqlcross import category_key, sku_key
from profilestore.storage import Storage, open_storage

US: Final = 1_000_000
DAY: Final = 86_400 * US
T0: Final = 1_800_000_000 * US
CATEGORIES: Final = ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
SKUS: Final = 2_000
CHUNK: Final = 5_000


def _sku(rng: random.Random) -> tuple[str, str]:
    number = rng.randrange(SKUS)
    return f"SKU-{number}", CATEGORIES[number % len(CATEGORIES)]


async def fill(storage: Storage, args: argparse.Namespace, seed: int = 16) -> None:
    rng = random.Random(seed)
    db = storage._db  # type: ignore[attr-defined]
    touches, keys, sales, lines = [], [], [], []
    for n in range(args.touches):
        shopper = f"p-{rng.randrange(args.shoppers)}"
        at = T0 + rng.randrange(30 * DAY)
        store = rng.random() < 0.7
        channel, touchpoint = ("store", "offer") if store else ("online", "campaign")
        ref = f"{touchpoint}-{rng.randrange(40)}"
        touches.append(
            (channel, f"t-{n}", touchpoint, ref, f"s-{rng.randrange(50)}" if store else None, shopper, at)
        )
        for _ in range(2):
            sku, category = _sku(rng)
            keys.append((channel, f"t-{n}", sku_key(sku)))
        keys.append((channel, f"t-{n}", category_key(category)))
    for n in range(args.sales):
        buyer = f"p-{rng.randrange(args.shoppers)}" if rng.random() < 0.8 else None
        channel = "store" if rng.random() < 0.6 else "online"
        at = T0 + rng.randrange(30 * DAY)
        total = 0.0
        for line in range(rng.randint(1, 4)):
            sku, category = _sku(rng)
            price = round(rng.uniform(1, 100), 2)
            lines.append((channel, f"x-{n}", line, sku, category, 1, price))
            total += price
        sales.append((channel, f"x-{n}", "s-1" if channel == "store" else None, buyer, at, total, "EUR", T0))
    statements = (
        (
            "INSERT INTO touches (channel, touch_id, touchpoint, ref_id, store_id, shopper_id, at_us)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            touches,
        ),
        ("INSERT INTO touch_keys (channel, touch_id, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", keys),
        (
            "INSERT INTO sales (channel, sale_id, store_id, shopper_id, at_us, total, currency, received_us)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            sales,
        ),
        (
            "INSERT INTO sale_lines (channel, sale_id, line, sku, category, qty, price)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            lines,
        ),
    )
    for sql, rows in statements:
        for start in range(0, len(rows), CHUNK):
            async with db.writing() as conn:
                await conn.executemany(sql, rows[start : start + CHUNK])
    async with db.writing() as conn:
        await conn.execute("ANALYZE")


@contextlib.asynccontextmanager
async def database(pg: bool) -> AsyncIterator[str]:
    if not pg:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite://{Path(folder) / 'store.db'}"
        return
    from tests.support.profilestore import PG_ADMIN_URL, create_database, database_url, drop_database  # noqa: PLC0415

    name = await create_database("edge_bench_cross")
    try:
        yield database_url(PG_ADMIN_URL, name)
    finally:
        await drop_database(name)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with database(args.pg) as url, open_storage(url) as storage:
        started = time.perf_counter()
        await fill(storage, args)
        filled_s = time.perf_counter() - started
        filled_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the generated rows' share
        since, until = T0, T0 + 30 * DAY
        report_s, baseline_s = [], []
        conversions = 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            async with storage._db.reading() as conn:  # type: ignore[attr-defined]
                await conn.fetch("SELECT COUNT(*) FROM sales WHERE at_us >= $1 AND at_us < $2", since, until)
            baseline_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows, _ = await storage.cross_channel(since, until, 14 * DAY)
            report_s.append(time.perf_counter() - started)
            conversions = sum(r.conversions for r in rows if r.basis == "last_touch" and r.ref_id is None)
    return {
        "database": "postgresql" if args.pg else "sqlite",
        "filled_s": round(filled_s, 1),
        "report_s": [round(min(report_s), 3), round(statistics.median(report_s), 3), round(max(report_s), 3)],
        "baseline_count_s": round(statistics.median(baseline_s), 4),
        "attributed_last_touch": conversions,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_after_fill_mb": round(filled_rss, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crosschannel", description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, default=50_000)
    parser.add_argument("--touches", type=int, default=200_000)
    parser.add_argument("--sales", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL at EDGE_TEST_PG_URL instead of SQLite")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(
        f"cross-channel report ({result['database']}; {args.touches:,} touches, {args.sales:,} sales, "
        f"{args.shoppers:,} shoppers, 30 days, 14-day window): min/median/max {result['report_s']} s "
        f"(baseline COUNT(*) {result['baseline_count_s']} s); {result['attributed_last_touch']:,} attributed; "
        f"peak RSS {result['peak_rss_mb']} MB (after the fill, before any report: "
        f"{result['peak_rss_after_fill_mb']} MB); filled in {result['filled_s']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
