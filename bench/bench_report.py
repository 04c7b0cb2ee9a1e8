"""The measurement report at scale: ``edge-gateway report`` over 1,000,000 exposures and 200,000 sales.

A fresh ledger (the real schema: ``Ledger`` migrates it) is filled, seeded, with a month of a busy store:
1,000,000 decisions each with its acked exposure (70 % of shoppers identified, 5 % of them in the holdout by
the policy's own salted hash), 200,000 POS sales with 1-3 lines (60 % identified), staff answers, device
settings and online campaign exposures. Rows go in with ``executemany`` in big transactions, synchronous off
(a fixture, not the gateway's write path). Then the report runs as an operator runs it, a child process
(``python -m edge report``), once per repeat: wall seconds and the child's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``: each repeat runs in a fresh grandchild so the maximum is its own).
Target (DESIGN.md, issue 16): <= 10 s and <= 300 MB.

Run alone: ``.venv/bin/python -m bench.bench_report [--decisions N] [--conversions N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge.clock import ManualClock
from edge.decide.policy import is_holdout
from edge.identity import generate_keypair
from edge.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
DECISIONS = 1_000_000
CONVERSIONS = 200_000
SHOPPERS = 60_000
DAYS = 30
TZ = "Europe/Berlin"
START = datetime(2026, 11, 1, tzinfo=ZoneInfo(TZ)).timestamp()  # the store's midnight, November 1st
HOLDOUT_PERCENT = 5.0
SALT = "edge-holdout-v1"
ZONES = ("entrance", "cafe", "fitting-rooms", "electronics", "beauty", "kids")
CATEGORIES = ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
OFFERS = tuple(f"offer-{n:02d}" for n in range(24))
# Each offer promotes three SKUs of its category; sales also buy SKUs no offer promotes.
OFFER_CATEGORY = {offer: CATEGORIES[n % len(CATEGORIES)] for n, offer in enumerate(OFFERS)}
OFFER_SKUS = {offer: tuple(f"sku-{offer}-{k}" for k in range(3)) for offer in OFFERS}
CHUNK = 50_000
MODEL_VERSION = "offers-2026-11-01"


def _offers_toml() -> str:
    return "".join(
        f'[[offers]]\nid = "{offer}"\ntitle = "Offer {offer}"\ncategory = "{OFFER_CATEGORY[offer]}"\n'
        f"skus = {json.dumps(list(OFFER_SKUS[offer]))}\nvalue = 5.0\n\n"
        for offer in OFFERS
    )


def write_config(folder: Path) -> Path:
    """A gateway configuration whose ledger is ``folder/ledger.sqlite`` and whose catalog is the offers above."""
    _, public_pem = generate_keypair()
    (folder / "token-public.pem").write_bytes(public_pem)
    (folder / "offers.toml").write_text(_offers_toml())
    config = folder / "gateway.toml"
    config.write_text(
        '[store]\nid = "bench-store"\n\n'
        '[identity]\npublic_key_files = ["token-public.pem"]\n\n'
        f'[decisions]\nmodel = "{REPO / "models" / "offers.onnx"}"\noffers_file = "offers.toml"\n\n'
        f'[decisions.policy]\nholdout_percent = {HOLDOUT_PERCENT}\nholdout_salt = "{SALT}"\ntz = "{TZ}"\n\n'
        '[ledger]\npath = "ledger.sqlite"\n\n' + "".join(f'[[zones]]\nid = "{zone}"\n\n' for zone in ZONES)
    )
    return config


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]


def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """Rows (dicts) into ``table`` in chunks; only the columns the schema has (the schema is the ledger's)."""
    have = set(_columns(conn, table))
    count = 0
    iterator = iter(rows)
    while True:
        chunk = [row for _, row in zip(range(CHUNK), iterator, strict=False)]
        if not chunk:
            return count
        names = [name for name in chunk[0] if name in have]
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        conn.executemany(sql, [tuple(row[name] for name in names) for row in chunk])
        count += len(chunk)


def _candidates(rng: random.Random, offers: Sequence[str]) -> str:
    return json.dumps(
        [
            {"offer_id": offer, "eligible": True, "score": round(rng.random(), 4), "reason": None}
            for offer in offers
        ],
        separators=(",", ":"),
    )


def _decisions(rng: random.Random, count: int, shoppers: Sequence[str]) -> Iterator[dict[str, Any]]:
    span = DAYS * 86_400.0
    zone_offers = {zone: OFFERS[n * 4 : n * 4 + 4] for n, zone in enumerate(ZONES)}
    held_out = {shopper for shopper in shoppers if is_holdout(shopper, SALT, HOLDOUT_PERCENT)}
    # The candidates column as the policy writes it, drawn from a pool per zone (encoding 1M lists is slow).
    pool = {zone: [_candidates(rng, offers) for _ in range(64)] for zone, offers in zone_offers.items()}
    for n in range(count):
        at = START + span * n / count + rng.uniform(0.0, 1.0)
        zone = ZONES[rng.randrange(len(ZONES))]
        offers = zone_offers[zone]
        shopper = shoppers[rng.randrange(len(shoppers))] if rng.random() < 0.7 else None
        holdout = shopper is not None and shopper in held_out
        chosen = offers[rng.randrange(len(offers))]
        yield {
            "decision_id": f"d{n:08d}",
            "display_id": f"screen-{zone}-{n % 3}",
            "zone": zone,
            "at_wall": at,
            "shopper_id": shopper,
            "offer_id": None if holdout else chosen,
            "counterfactual_offer_id": chosen if holdout else None,
            "template": "loop" if holdout else "offer",
            "model_version": MODEL_VERSION,
            "propensity": 0.925 if rng.random() < 0.9 else 0.025,
            "explored": 0,
            "holdout": int(holdout),
            "personalized": int(shopper is not None),
            "candidates": pool[zone][n % 64],
        }


def _exposures(decisions: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for d in decisions:
        yield {
            "decision_id": d["decision_id"],
            "display_id": d["display_id"],
            "version": 1,
            "shown_at_wall": d["at_wall"] + 0.05,
            "acked_at_wall": d["at_wall"] + 0.1,
            "shopper_id": d["shopper_id"],
        }


def _tee(rows: Iterable[dict[str, Any]], keep: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        keep.append(row)
        yield row


def _sales(
    rng: random.Random, count: int, shoppers: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    span = (DAYS + 7) * 86_400.0
    sales, items = [], []
    for n in range(count):
        at = START + rng.uniform(0.0, span)
        event_id = f"s{n:08d}"
        total = 0.0
        for line in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                offer = OFFERS[rng.randrange(len(OFFERS))]
                sku, category = OFFER_SKUS[offer][rng.randrange(3)], OFFER_CATEGORY[offer]
            else:
                category = CATEGORIES[rng.randrange(len(CATEGORIES))]
                sku = f"sku-other-{rng.randrange(5_000)}"
            qty, price = float(rng.randint(1, 3)), round(rng.uniform(1.0, 60.0), 2)
            total += qty * price
            items.append(
                {
                    "event_id": event_id,
                    "line": line,
                    "sku": sku,
                    "category": category,
                    "qty": qty,
                    "price": price,
                }
            )
        sales.append(
            {
                "event_id": event_id,
                "at_wall": at,
                "received_wall": at + rng.uniform(0.0, 2.0),
                "lane": f"lane-{n % 6}",
                "shopper_id": shoppers[rng.randrange(len(shoppers))] if rng.random() < 0.6 else None,
                "total": round(total, 2),
                "currency": "EUR",
            }
        )
    return sales, items


def _touches(rng: random.Random, shoppers: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    span = DAYS * 86_400.0
    staff = [
        {
            "notice_id": f"n{n:06d}",
            "action": "assisting" if rng.random() < 0.8 else "dismissed",
            "team": "fitting",
            "zone": "fitting-rooms",
            "at_wall": START + rng.uniform(0.0, span),
            "shopper_id": shoppers[rng.randrange(len(shoppers))],
        }
        for n in range(5_000)
    ]
    settings = [
        {
            "id": n + 1,
            "device_id": f"fitting-{'light' if n % 2 else 'climate'}",
            "at_wall": START + span * n / 20_000,
            "reason": "preferences",
            "applied": '{"temperature":21}',
        }
        for n in range(20_000)
    ]
    links = [
        {"shopper_id": shoppers[rng.randrange(len(shoppers))], "setting_id": n + 1}
        for n in range(20_000)
        if n % 5 < 2
    ]
    campaigns = [
        {
            "exposure_id": f"c{n:06d}",
            "shopper_id": shoppers[rng.randrange(len(shoppers))],
            "campaign_id": f"campaign-{n % 4}",
            "at_wall": START + rng.uniform(0.0, span),
            "skus": json.dumps(list(OFFER_SKUS[OFFERS[n % len(OFFERS)]])),
            "category": OFFER_CATEGORY[OFFERS[n % len(OFFERS)]],
        }
        for n in range(10_000)
    ]
    return {
        "staff_interactions": staff,
        "device_settings": settings,
        "device_setting_shoppers": links,
        "campaign_exposures": campaigns,
    }


def build_ledger(
    path: Path, *, decisions: int = DECISIONS, conversions: int = CONVERSIONS, seed: int = 16
) -> dict[str, int]:
    """The ledger file at ``path``: the real schema, then the seeded month above. Returns rows per table."""

    async def migrate() -> None:
        async with Ledger(path, ManualClock(wall=START)):
            pass

    asyncio.run(migrate())
    rng = random.Random(seed)
    shoppers = [f"p-{rng.getrandbits(48):012x}" for _ in range(SHOPPERS)]
    counts: dict[str, int] = {}
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        kept: list[dict[str, Any]] = []
        counts["decisions"] = _insert(conn, "decisions", _tee(_decisions(rng, decisions, shoppers), kept))
        counts["exposures"] = _insert(conn, "exposures", _exposures(kept))
        del kept
        sales, items = _sales(rng, conversions, shoppers)
        counts["conversions"] = _insert(conn, "conversions", sales)
        counts["conversion_items"] = _insert(conn, "conversion_items", items)
        for table, rows in _touches(rng, shoppers).items():
            counts[table] = _insert(conn, table, rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts


# One report in a fresh process, its own peak RSS measured by its parent: the grandchild's ru_maxrss.
_MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stdout.write(f"{seconds} {peak_kb} {done.returncode}\\n")
sys.stderr.write(done.stderr)
"""


def run_report(config: Path, out: Path) -> tuple[float, float]:
    """One ``edge-gateway report`` of the whole month: (wall seconds, peak RSS in MB)."""
    command = [
        sys.executable,
        "-m",
        "edge",
        "report",
        "--config",
        str(config),
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-30",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True, cwd=REPO
    )
    seconds, peak_kb, code = done.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"report failed ({code}): {done.stderr}")
    return float(seconds), int(peak_kb) / 1024.0


def run(*, repeats: int = 3, decisions: int = DECISIONS, conversions: int = CONVERSIONS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        started = time.perf_counter()
        counts = build_ledger(folder / "ledger.sqlite", decisions=decisions, conversions=conversions)
        build_s = time.perf_counter() - started
        size_mb = (folder / "ledger.sqlite").stat().st_size / 1e6
        runs = [run_report(config, folder / f"report-{n}") for n in range(repeats)]
        summary = json.loads((folder / "report-0" / "summary.json").read_text())
    seconds = [s for s, _ in runs]
    rss = [r for _, r in runs]
    return {
        "seconds": round(statistics.median(seconds), 2),
        "rss_mb": round(statistics.median(rss), 1),
        "seconds_min_max": [round(min(seconds), 2), round(max(seconds), 2)],
        "rss_mb_min_max": [round(min(rss), 1), round(max(rss), 1)],
        "repeats": repeats,
        "rows": counts,
        "ledger_mb": round(size_mb, 1),
        "build_s": round(build_s, 1),
        "report_counts": {k: v for k, v in summary.get("counts", {}).items() if k != "skipped"},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=DECISIONS)
    parser.add_argument("--conversions", type=int, default=CONVERSIONS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        json.dumps(
            run(repeats=args.repeats, decisions=args.decisions, conversions=args.conversions), indent=2
        )
    )


if __name__ == "__main__":
    main()
