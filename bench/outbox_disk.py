"""Outbox on disk: bytes per queued event during an outage, and the cost of one drain step (peek 500 + ack).

A fresh ledger file takes a backlog of realistic mixed events (decisions and exposures as telemetry, a few
consents and conversions) through ``ledger.outbox.enqueue``, concurrently so the writer batches as in the
gateway. The file is then checkpointed (closing the only connection folds the WAL into it); the growth of
db + wal divided by the events is ``bytes_per_event`` (issue 13: <= 200, so a 24 h outage at 10 events/s
takes <= 175 MB). ``on_disk`` splits the file by structure (SQLite's dbstat): the rows, the unique index
on event ids, the class index. Then the backlog is drained the way the sync client will: ``peek(500, 1
MiB)`` (which decodes each stored row back into its wire event) + ``ack`` (durable), timed per step.

Run alone: ``.venv/bin/python -m bench.outbox_disk``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from edge.clock import ManualClock, iso_utc
from edge.ledger import Ledger
from edge.sync.wire import EventClass

EVENTS = 30_000
CHUNK = 2_000  # enqueues in flight at once: enough to fill the writer's 256-op batches
PEEK_EVENTS = 500
PEEK_BYTES = 1 << 20
DRAIN_STEPS = 40
OUTAGE_EVENTS = 864_000  # 24 h at 10 events/s
# Distinct shoppers in the backlog: a busy store sees a few thousand identified shoppers a day.
SHOPPERS = 3_000
ZONES = ("entrance", "cafe", "bakery", "produce", "checkout", "wine")
OFFERS = tuple(f"offer-{n:03d}" for n in range(50))
PURPOSES = ("personalization", "measurement", "clienteling", "camera_checkin")


def _events(
    rng: random.Random, count: int, clock: ManualClock
) -> list[tuple[str, EventClass, dict[str, Any], str | None, float]]:
    """(kind, class, data, shopper_id, at_wall): ~48% decisions, ~45% exposures, ~5% consents, ~2% sales."""
    shoppers = [f"p-{rng.getrandbits(32):08x}" for _ in range(SHOPPERS)]
    out = []
    at = clock.wall()
    for _ in range(count):
        at += rng.uniform(0.0, 0.2)
        roll = rng.random()
        # Measurement consent: about 60% of identified shoppers let decisions keep their id.
        shopper = rng.choice(shoppers) if rng.random() < 0.6 else None
        decision_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # same text as the UUIDv7 layout
        zone = rng.choice(ZONES)
        display = f"screen-{zone}-{rng.randint(1, 3)}"
        if roll < 0.48:
            data: dict[str, Any] = {
                "decision_id": decision_id,
                "display_id": display,
                "zone": zone,
                "offer_id": rng.choice(OFFERS) if rng.random() < 0.9 else None,
                "template": rng.choice(("hero", "banner", "split")),
                "model_version": "offers-2026-11-20",
                "propensity": round(rng.uniform(0.02, 1.0), 6),
                "explored": rng.random() < 0.1,
                "holdout": rng.random() < 0.05,
                "personalized": shopper is not None,
            }
            out.append(("decision", EventClass.TELEMETRY, data, shopper, at))
        elif roll < 0.93:
            data = {
                "decision_id": decision_id,
                "display_id": display,
                "version": rng.randint(1, 5000),
                "shown_at": iso_utc(at),
                "acked_at": iso_utc(at + rng.uniform(0.01, 0.3)),
            }
            out.append(("exposure", EventClass.TELEMETRY, data, shopper, at))
        elif roll < 0.98:
            data = {
                "purpose": rng.choice(PURPOSES),
                "granted": rng.random() < 0.8,
                "at": iso_utc(at),
                "source": rng.choice(("app", "kiosk")),
            }
            out.append(("consent", EventClass.PRIVACY, data, rng.choice(shoppers), at))
        else:
            data = {
                "order_id": f"pos-{rng.getrandbits(40):010x}",
                "offer_id": rng.choice(OFFERS),
                "amount": round(rng.uniform(1.0, 80.0), 2),
                "currency": "EUR",
            }
            out.append(("conversion", EventClass.CONVERSION, data, rng.choice(shoppers), at))
    return out


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


# dbstat's names for the outbox's structures.
_STRUCTURES = {"outbox": "rows", "sqlite_autoindex_outbox_1": "event_id_index", "outbox_class": "class_index"}


def _on_disk(path: Path, events: int) -> dict[str, float]:
    """Bytes per event of each outbox structure (pages, so free space included); empty without dbstat."""
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:  # an SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            return {}
    return {_STRUCTURES[name]: size / events for name, size in rows if name in _STRUCTURES}


async def _once(folder: Path, seed: int, events: int) -> dict[str, float]:
    path = folder / f"run-{seed}" / "ledger.db"
    clock = ManualClock()
    batch = _events(random.Random(seed), events, clock)
    body_bytes = sum(
        len(json.dumps(data, separators=(",", ":"))) for _, _, data, _, _ in batch
    )  # the data part only; the envelope (id, kind, class, at, shopper_id) adds ~150 bytes
    # Far above the backlog: this measures storage, not the drop policy.
    async with Ledger(path, clock, outbox_max_bytes=1 << 40) as ledger:
        before = _disk(path)
        started = time.perf_counter()
        cpu = time.process_time()
        for start in range(0, len(batch), CHUNK):
            await asyncio.gather(
                *(
                    ledger.outbox.enqueue(kind, cls, data, shopper_id=shopper, at_wall=at)
                    for kind, cls, data, shopper, at in batch[start : start + CHUNK]
                )
            )
        enqueue_s = time.perf_counter() - started
        # CPU of the whole process (event loop and database thread): what a busy machine does not inflate.
        enqueue_cpu_s = time.process_time() - cpu
        stats = await ledger.outbox.stats()
    grown = _disk(path) - before  # closed: the WAL is checkpointed into the file
    on_disk = _on_disk(path, events)
    steps: list[float] = []
    cpu_steps: list[float] = []
    drained = 0
    async with Ledger(path, clock, outbox_max_bytes=1 << 40) as ledger:
        for _ in range(DRAIN_STEPS):
            started = time.perf_counter()
            cpu = time.process_time()
            entries = await ledger.outbox.peek(PEEK_EVENTS, PEEK_BYTES)
            drained += await ledger.outbox.ack([entry.seq for entry in entries])
            steps.append((time.perf_counter() - started) * 1000.0)
            cpu_steps.append((time.process_time() - cpu) * 1000.0)
    steps.sort()
    return {
        "bytes_per_event": grown / events,
        "event_bytes_mean": stats.bytes / events,
        "data_bytes_mean": body_bytes / events,
        "enqueue_per_s": events / enqueue_s,
        "enqueue_cpu_us": enqueue_cpu_s / events * 1e6,
        "peek_ack_cpu_ms_p50": statistics.median(cpu_steps),
        "peek_ack_ms_p50": statistics.median(steps),
        "peek_ack_ms_max": steps[-1],
        "drained": drained,
        **{f"on_disk_{name}": size for name, size in on_disk.items()},
    }


def run(repeats: int = 3, events: int = EVENTS) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        runs = [asyncio.run(_once(Path(folder), seed, events)) for seed in range(repeats)]
    per_event = sorted(r["bytes_per_event"] for r in runs)
    median = statistics.median(per_event)
    peek_ack = sorted(r["peek_ack_ms_p50"] for r in runs)
    on_disk = {
        key.removeprefix("on_disk_"): round(statistics.median(r[key] for r in runs), 1)
        for key in runs[0]
        if key.startswith("on_disk_")
    }
    return {
        "bytes_per_event": round(median, 1),
        "min": round(per_event[0], 1),
        "max": round(per_event[-1], 1),
        "events": events,
        "runs": repeats,
        "event_bytes_mean": round(statistics.median(r["event_bytes_mean"] for r in runs), 1),
        # What the outbox bound and its totals count (the wire events), against what the disk holds.
        "disk_per_wire_byte": round(median / statistics.median(r["event_bytes_mean"] for r in runs), 2),
        "on_disk": on_disk,
        "outage_24h_10eps_mb": round(median * OUTAGE_EVENTS / 1e6, 1),
        "enqueue_per_s": round(statistics.median(r["enqueue_per_s"] for r in runs)),
        "enqueue_cpu_us_per_event": round(statistics.median(r["enqueue_cpu_us"] for r in runs), 1),
        "peek_ack_500_cpu_ms_p50": round(statistics.median(r["peek_ack_cpu_ms_p50"] for r in runs), 2),
        "peek_ack_500_ms_p50": round(statistics.median(peek_ack), 2),
        "peek_ack_500_ms_p50_min": round(peek_ack[0], 2),
        "peek_ack_500_ms_p50_max": round(peek_ack[-1], 2),
        "peek_ack_500_ms_max": round(max(r["peek_ack_ms_max"] for r in runs), 2),
        "drain_events_per_s": round(PEEK_EVENTS / statistics.median(peek_ack) * 1000.0),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
