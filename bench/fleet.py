"""fleet: the reference cloud on PostgreSQL under 500 stores, at two chain sizes (issue 15).

DESIGN.md's target: a store's pull costs the same whatever the chain's shopper count. For each chain size
(20,000 then 200,000 shoppers, each with a home store) a fresh PostgreSQL database is filled, the reference
store runs as its own process (``python -m profilestore``, as in production), and 500 simulated stores pull
and push through it for a window: each pushes 2 events a second (one batch a second, as a gateway's pusher)
naming its own shoppers (70%), visitors from other stores (10%: each makes the store hold the visitor) or
nobody, and pulls every 5 s; meanwhile the cloud changes 20 profiles and 10 consents a second and an offer
every 5 s. Reported per size, median (min … max) over the windows: events accepted per second, pull and
push latency, and what PostgreSQL reads per pull: ``EXPLAIN (ANALYZE, FORMAT JSON)`` of the server's pull
query from the cursors 50 stores last pulled from, on the server's own planner settings. The baseline in
the same run is schema 2's query (``store_id IS NULL OR store_id = $3``) on the same data and cursors.

    python -m bench.fleet [--stores 500] [--sizes 20000,200000] [--rates 2,0.5] [--seconds 10] [--repeats 3]

PostgreSQL: ``EDGE_TEST_PG_URL``, as the tests (a database with a random name, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import asyncpg

from edge.clock import iso_utc
from edge.demo.broker import free_loopback_port
from profilestore.jsonbody import dumps
from profilestore.postgres import SERVER_SETTINGS
from profilestore.served import consent_wire, eid_key_wire, served_profile
from profilestore.sqlscope import scoped_key
from profilestore.sqlstore import PULL_SQL
from profilestore.storage import ConsentState, EidKeyState
from storecontract.sync import ChangeKind
from tests.support.profilestore import PG_ADMIN_URL, create_database, database_url, drop_database, plan_reads

STORES: Final = 500
SIZES: Final = (20_000, 200_000)
EVENTS_PER_PUSH: Final = 2
# Events per second per store: issue 15's (one push of 2 events a second, as a gateway's pusher), then a
# quarter of it, which this bench's 2-core VM serves without a queue (the first one saturates it).
RATES: Final = (2.0, 0.5)
PULL_EVERY_S: Final = 5.0
PROFILE_WRITES_PER_S: Final = 20
CONSENT_WRITES_PER_S: Final = 10
OFFER_EVERY_S: Final = 5.0
OWN_SHARE, VISITOR_SHARE = 0.7, 0.1  # of the events; the rest name nobody
PRESENCE_SHARE: Final = 0.3  # shoppers with presence_ble granted and an EID key
EXPLAINED: Final = 50
PAGE: Final = 500
SEED: Final = 20261215
START_TIMEOUT_S: Final = 30.0
# Schema 2's pull: the baseline.
OLD_PULL_SQL: Final = (
    "SELECT seq, kind, id, op, at_us, data FROM changes WHERE seq > $1"
    " AND (store_id IS NULL OR store_id = $3) ORDER BY seq LIMIT $2"
)
_COLUMNS: Final = {
    "profiles": ("shopper_id", "profile", "updated_us"),
    "consents": ("shopper_id", "purpose", "granted", "at_us", "source"),
    "eid_keys": ("shopper_id", "identity_key", "rotation_exponent", "clock_offset_s", "updated_us"),
    "store_shoppers": ("store_id", "shopper_id", "reason", "until_us", "home", "member"),
    "changes": ("seq", "kind", "id", "op", "at_us", "data", "compact_key", "shopper_id", "store_id"),
}


@contextlib.asynccontextmanager
async def _cloud(db_url: str, admin: str) -> AsyncIterator[str]:
    """``python -m profilestore`` on ``db_url``, a free loopback port; its base URL once /healthz answers."""
    port = free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "profilestore",
        *("--db", db_url, "--listen", f"127.0.0.1:{port}", "--admin-token-env", "FLEET_ADMIN_TOKEN"),
        *("--log-level", "WARNING"),
        env={**os.environ, "FLEET_ADMIN_TOKEN": admin},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/healthz") as answer:
                        if answer.status == 200:
                            break
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the profile store did not start on {db_url.rsplit('@', 1)[-1]}")
                await asyncio.sleep(0.05)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@dataclass(slots=True)
class Chain:
    stores: list[str]
    tokens: dict[str, str]
    shoppers: list[str]  # index i's home store is stores[i % len(stores)]
    rows: int  # changes written by the fill

    def home_shoppers(self, store_index: int) -> list[str]:
        return self.shoppers[store_index :: len(self.stores)]


def _shopper_rows(
    index: int, home: str, rng: random.Random, now_us: int, seq: int, tables: dict[str, list[tuple[Any, ...]]]
) -> int:
    """The rows a shopper of ``home`` leaves, as the server writes them (its own key and wire helpers); the
    last seq."""
    shopper = f"p{index:07d}"
    profile = {
        "name": f"Shopper {index}",  # kept by the cloud, never served
        "email": f"shopper{index}@example.com",
        "affinity": {"coffee": round(rng.random(), 2), "apparel": round(rng.random(), 2)},
        "visits": rng.randint(0, 50),
    }
    tables["profiles"].append((shopper, dumps(profile), now_us))
    tables["store_shoppers"].append((home, shopper, "home", 0, True, True))
    changes: list[tuple[ChangeKind, str | None, dict[str, Any]]] = [
        (ChangeKind.PROFILE, None, {"profile": served_profile(profile)})
    ]
    granted = {"personalization": True, "measurement": rng.random() < 0.6}
    key: EidKeyState | None = None
    if rng.random() < PRESENCE_SHARE:
        granted["presence_ble"] = True
        key = EidKeyState(rng.randbytes(16), 10, 0)
        tables["eid_keys"].append((shopper, key.identity_key, 10, 0, now_us))
    for purpose, value in granted.items():
        tables["consents"].append((shopper, purpose, value, now_us - 1, "app"))
        changes.append(
            (ChangeKind.CONSENT, purpose, consent_wire(ConsentState(purpose, value, now_us - 1, "app")))
        )
    if key is not None:
        changes.append((ChangeKind.EID_KEY, None, eid_key_wire(key)))
    for kind, suffix, data in changes:
        seq += 1
        key_text = scoped_key(kind, home, shopper, suffix)
        tables["changes"].append(
            (seq, kind.value, shopper, "upsert", now_us, dumps(data), key_text, shopper, home)
        )
    return seq


async def _fill(db_url: str, base: str, admin: str, stores: int, shoppers: int) -> Chain:
    """Register the stores through the admin API; write the shoppers straight into the tables (the server
    would take many minutes through its API), row for row as its own code writes them."""
    names = [f"store-{index:03d}" for index in range(stores)]
    tokens = {name: secrets.token_urlsafe(24) for name in names}
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession(base, headers=headers) as session:
        for name in names:
            async with session.put(f"/admin/v1/stores/{name}", json={"token": tokens[name]}) as answer:
                answer.raise_for_status()
    rng = random.Random(SEED)
    now_us = int(time.time() * 1_000_000)
    tables: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _COLUMNS}
    seq = 0
    for index in range(shoppers):
        seq = _shopper_rows(index, names[index % stores], rng, now_us, seq, tables)
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            for table, rows in tables.items():
                await conn.copy_records_to_table(table, records=rows, columns=_COLUMNS[table])
            await conn.execute("UPDATE counters SET value = $1 WHERE name = 'changes'", seq)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return Chain(names, tokens, [f"p{index:07d}" for index in range(shoppers)], seq)


@dataclass(slots=True)
class Tally:
    """One window's figures, all stores together."""

    offered: int = 0
    accepted: int = 0
    push_ms: list[float] = field(default_factory=list)
    pull_ms: list[float] = field(default_factory=list)
    pulled: int = 0
    failures: int = 0
    last_pull: dict[str, str] = field(default_factory=dict)  # store -> the cursor of its last pull


async def _timed(
    session: aiohttp.ClientSession, method: str, path: str, token: str, body: Any = None
) -> tuple[Any, float]:
    started = time.perf_counter()
    async with session.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as answer:
        answer.raise_for_status()
        document = await answer.json()
    return document, (time.perf_counter() - started) * 1000


async def _at(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


class Fleet:
    """The simulated stores and the cloud's own writers, on one client session."""

    def __init__(
        self, sessions: Sequence[aiohttp.ClientSession], chain: Chain, admin: str, rng: random.Random
    ) -> None:
        # Store i talks to replica i % replicas (a load balancer's affinity); the cloud's writers to the first.
        self._sessions = sessions
        self._session = sessions[0]
        self._chain = chain
        self._admin = admin
        self._rng = rng
        self.cursors: dict[str, str] = dict.fromkeys(chain.stores, "")
        self.windows = 0

    def _of(self, store: str) -> aiohttp.ClientSession:
        return self._sessions[self._chain.stores.index(store) % len(self._sessions)]

    def _event(self, index: int, rng: random.Random) -> dict[str, Any]:
        draw = rng.random()
        shopper: str | None
        if draw < OWN_SHARE:
            shopper = rng.choice(self._chain.home_shoppers(index))
        elif draw < OWN_SHARE + VISITOR_SHARE:
            shopper = rng.choice(self._chain.shoppers)
        else:
            shopper = None
        return {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": "exposure",
            "class": "telemetry",
            "at": iso_utc(time.time()),
            "shopper_id": shopper,
            "data": {"display": "screen-cafe"},
        }

    async def pull(self, store: str, tally: Tally | None) -> None:
        """Pull ``store`` up to date: every page, each request timed."""
        token = self._chain.tokens[store]
        if tally is not None:
            tally.last_pull[store] = self.cursors[store]
        while True:
            path = f"/v1/stores/{store}/changes?since={self.cursors[store]}&limit={PAGE}"
            page, ms = await _timed(self._of(store), "GET", path, token)
            self.cursors[store] = page["cursor"]
            if tally is not None:
                tally.pull_ms.append(ms)
                tally.pulled += len(page["changes"])
            if not page["more"]:
                return

    async def _store(self, index: int, end: float, push_every_s: float, tally: Tally) -> None:
        store = self._chain.stores[index]
        rng = random.Random(
            f"{SEED}/{self.windows}/{index}"
        )  # event ids never repeat across stores or windows

        async def pushing() -> None:
            moment = time.monotonic() + rng.uniform(0, push_every_s)
            while moment < end:
                await _at(moment)
                events = [self._event(index, rng) for _ in range(EVENTS_PER_PUSH)]
                tally.offered += len(events)
                try:
                    result, ms = await _timed(
                        self._of(store),
                        "POST",
                        f"/v1/stores/{store}/events",
                        self._chain.tokens[store],
                        {"events": events},
                    )
                except (aiohttp.ClientError, TimeoutError):
                    tally.failures += 1
                else:
                    tally.accepted += int(result["accepted"])
                    tally.push_ms.append(ms)
                moment += push_every_s

        async def pulling() -> None:
            moment = time.monotonic() + rng.uniform(0, PULL_EVERY_S)
            while moment < end:
                await _at(moment)
                try:
                    await self.pull(store, tally)
                except (aiohttp.ClientError, TimeoutError):
                    tally.failures += 1
                moment += PULL_EVERY_S

        await asyncio.gather(pushing(), pulling())

    async def _cloud_writes(self, end: float, tally: Tally) -> None:
        """The cloud's own changes during the window: profiles, consents, an offer."""
        rng = self._rng
        started = time.monotonic()
        writes = 0
        per_s = PROFILE_WRITES_PER_S + CONSENT_WRITES_PER_S
        while (moment := started + writes / per_s) < end:
            await _at(moment)
            shopper = rng.choice(self._chain.shoppers)
            try:
                if writes % per_s < PROFILE_WRITES_PER_S:
                    body: dict[str, Any] = {
                        "profile": {"visits": rng.randint(0, 50), "email": "x@example.com"}
                    }
                    await _timed(self._session, "PUT", f"/admin/v1/shoppers/{shopper}", self._admin, body)
                else:
                    body = {"granted": rng.random() < 0.5, "source": "app"}
                    path = f"/admin/v1/shoppers/{shopper}/consents/measurement"
                    await _timed(self._session, "PUT", path, self._admin, body)
                if writes % int(per_s * OFFER_EVERY_S) == 0:
                    offer = {
                        "id": "latte",
                        "title": "Latte",
                        "category": "coffee",
                        "value": rng.uniform(1, 5),
                    }
                    await _timed(self._session, "PUT", "/admin/v1/offers/latte", self._admin, offer)
            except (aiohttp.ClientError, TimeoutError):
                tally.failures += 1
            writes += 1

    async def window(self, seconds: float, rate: float) -> Tally:
        """``seconds`` of load, each store pushing ``rate`` events a second."""
        tally = Tally()
        self.windows += 1
        end = time.monotonic() + seconds
        push_every_s = EVENTS_PER_PUSH / rate
        await asyncio.gather(
            *(self._store(index, end, push_every_s, tally) for index in range(len(self._chain.stores))),
            self._cloud_writes(end, tally),
        )
        return tally


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _explain(db_url: str, pulls: Sequence[tuple[str, int]]) -> dict[str, float]:
    """Rows returned and read by the pull query, and by schema 2's, from each (store, cursor)."""
    conn = await asyncpg.connect(db_url, server_settings=SERVER_SETTINGS)
    figures: dict[str, list[float]] = {
        "returned": [],
        "read": [],
        "removed": [],
        "old_read": [],
        "ms": [],
        "old_ms": [],
    }
    try:
        for sql, prefix in ((PULL_SQL, ""), (OLD_PULL_SQL, "old_")):
            statement = await conn.prepare("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            for store, after in pulls:
                plan = json.loads(await statement.fetchval(after, PAGE + 1, store))[0]
                read, removed, _ = plan_reads(plan["Plan"])
                figures[f"{prefix}read"].append(read)
                figures[f"{prefix}ms"].append(float(plan["Execution Time"]))
                if not prefix:
                    figures["returned"].append(float(plan["Plan"]["Actual Rows"]))
                    figures["removed"].append(removed)
    finally:
        await conn.close()
    return {
        "rows_returned_median": statistics.median(figures["returned"]),
        "rows_read_median": statistics.median(figures["read"]),
        "rows_read_max": max(figures["read"]),
        "rows_removed_max": max(figures["removed"]),
        "query_ms_median": round(statistics.median(figures["ms"]), 3),
        "old_rows_read_median": statistics.median(figures["old_read"]),
        "old_rows_read_max": max(figures["old_read"]),
        "old_query_ms_median": round(statistics.median(figures["old_ms"]), 3),
    }


def _seq(cursor: str) -> int:
    return int(cursor.rpartition(".")[2] or 0)


async def _window(fleet: Fleet, seconds: float, rate: float, db_url: str) -> dict[str, Any]:
    """One window of load, and the plans of the pulls 50 stores last made (and of a rebuild's first page)."""
    tally = await fleet.window(seconds, rate)
    sample = sorted(tally.last_pull)[:EXPLAINED]
    return {
        "events_per_s": round(tally.accepted / seconds),
        "offered_per_s": round(tally.offered / seconds),
        "pull_p50_ms": round(_percentile(tally.pull_ms, 0.50), 2),
        "pull_p99_ms": round(_percentile(tally.pull_ms, 0.99), 2),
        "push_p50_ms": round(_percentile(tally.push_ms, 0.50), 2),
        "push_p99_ms": round(_percentile(tally.push_ms, 0.99), 2),
        "pull_requests": len(tally.pull_ms),
        "changes_pulled": tally.pulled,
        "failures": tally.failures,
        "steady": await _explain(db_url, [(store, _seq(tally.last_pull[store])) for store in sample]),
        "rebuild_first_page": await _explain(db_url, [(store, 0) for store in sample[:10]]),
    }


async def _size(
    shoppers: int, stores: int, rates: Sequence[float], seconds: float, repeats: int, replicas: int
) -> dict[str, Any]:
    try:
        name = await create_database("edge_fleet")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        msg = f"the fleet benchmark needs PostgreSQL at {PG_ADMIN_URL} (EDGE_TEST_PG_URL): {exc}"
        raise RuntimeError(msg) from exc
    db_url = database_url(PG_ADMIN_URL, name)
    admin = secrets.token_urlsafe(24)
    try:
        async with contextlib.AsyncExitStack() as stack:
            bases = [await stack.enter_async_context(_cloud(db_url, admin)) for _ in range(replicas)]
            started = time.perf_counter()
            chain = await _fill(db_url, bases[0], admin, stores, shoppers)
            fill_s = time.perf_counter() - started
            sessions = [
                await stack.enter_async_context(
                    aiohttp.ClientSession(
                        base,
                        connector=aiohttp.TCPConnector(limit=stores),
                        timeout=aiohttp.ClientTimeout(total=60),
                    )
                )
                for base in bases
            ]
            fleet = Fleet(sessions, chain, admin, random.Random(SEED + shoppers))
            started = time.perf_counter()
            first = Tally()
            await asyncio.gather(*(fleet.pull(store, first) for store in chain.stores))  # the first sync
            first_sync_s = time.perf_counter() - started
            windows = {
                f"{rate:g}": [await _window(fleet, seconds, rate, db_url) for _ in range(repeats)]
                for rate in rates
            }
        conn = await asyncpg.connect(db_url)
        try:
            changes = int(await conn.fetchval("SELECT COUNT(*) FROM changes"))
            memberships = int(await conn.fetchval("SELECT COUNT(*) FROM store_shoppers WHERE member"))
        finally:
            await conn.close()
    finally:
        await drop_database(name)
    return {
        "shoppers": shoppers,
        "shoppers_per_store": statistics.median(len(chain.home_shoppers(i)) for i in range(stores)),
        "replicas": replicas,
        "fill_s": round(fill_s, 1),
        "first_sync_s": round(first_sync_s, 1),
        "first_sync_changes": first.pulled,
        "changes_rows": changes,
        "memberships": memberships,
        "rates": {rate: {**_summary(runs), "windows": runs} for rate, runs in windows.items()},
    }


def _summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure as [min, median, max] over the windows."""

    def spread(values: list[float]) -> list[float]:
        return [min(values), statistics.median(values), max(values)]

    flat = ("events_per_s", "pull_p50_ms", "pull_p99_ms", "push_p50_ms", "push_p99_ms")
    figures: dict[str, Any] = {name: spread([window[name] for window in windows]) for name in flat}
    for part in ("steady", "rebuild_first_page"):
        for name in (
            "rows_returned_median",
            "rows_read_median",
            "rows_read_max",
            "old_rows_read_median",
            "old_rows_read_max",
            "query_ms_median",
            "old_query_ms_median",
        ):
            figures[f"{part}_{name}"] = spread([window[part][name] for window in windows])
    return figures


def run(
    *,
    stores: int = STORES,
    sizes: Sequence[int] = SIZES,
    rates: Sequence[float] = RATES,
    seconds: float = 10.0,
    repeats: int = 3,
    replicas: int = 1,
) -> dict[str, Any]:
    by_size = {
        str(size): asyncio.run(_size(size, stores, rates, seconds, repeats, replicas)) for size in sizes
    }
    small, large = by_size[str(min(sizes))]["rates"], by_size[str(max(sizes))]["rates"]
    target, light = f"{rates[0]:g}", f"{rates[-1]:g}"

    def ratio(rate: str, name: str) -> float:
        return round(float(large[rate][name][1]) / max(float(small[rate][name][1]), 1e-9), 2)

    return {
        "sizes": by_size,
        "stores": stores,
        "rates": list(rates),
        "seconds": seconds,
        "repeats": repeats,
        "replicas": replicas,
        # Largest chain over smallest: what PostgreSQL reads per pull (at the target load), and the pull's
        # latency where the machine is not saturated (the lightest load).
        "rows_per_pull_ratio": ratio(target, "steady_rows_read_median"),
        "pull_p50_ratio": ratio(light, "pull_p50_ms"),
        "accepted_events_per_s": min(size["rates"][target]["events_per_s"][1] for size in by_size.values()),
    }


def table(results: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md: a column per (chain size, load), median (min … max) over the windows."""

    def cell(figures: dict[str, Any], name: str) -> str:
        low, mid, high = figures[name]
        return f"{mid:g} ({low:g} … {high:g})"

    names = {
        "events_per_s": "events/s accepted",
        "pull_p50_ms": "pull p50 ms (one request)",
        "pull_p99_ms": "pull p99 ms",
        "push_p50_ms": "push p50 ms",
        "push_p99_ms": "push p99 ms",
        "steady_rows_returned_median": "rows returned / pull",
        "steady_rows_read_median": "rows read / pull",
        "steady_rows_read_max": "rows read / pull, max of 50",
        "steady_old_rows_read_median": "baseline: rows read / pull",
        "steady_query_ms_median": "pull query ms (server side)",
        "steady_old_query_ms_median": "baseline: query ms",
        "rebuild_first_page_rows_read_median": "a rebuild's first page: rows read",
        "rebuild_first_page_old_rows_read_median": "baseline: rows read",
    }
    sizes = results["sizes"]
    columns = [(size, rate) for size in sizes for rate in sizes[size]["rates"]]
    heading = " | ".join(f"{int(size):,} shoppers, {rate} ev/s/store" for size, rate in columns)
    lines = [f"| | {heading} |", "|---|" + "---|" * len(columns)]
    for name, label in names.items():
        cells = [cell(sizes[size]["rates"][rate], name) for size, rate in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name, label in (
        ("changes_rows", "rows in `changes` at the end"),
        ("memberships", "memberships at the end"),
        ("fill_s", "filling the database, s"),
        ("first_sync_s", "first sync of every store, s"),
    ):
        lines.append(f"| {label} | " + " | ".join(f"{sizes[size][name]:g}" for size, _ in columns) + " |")
    lines.append(
        f"\nrows read per pull, largest / smallest chain: {results['rows_per_pull_ratio']:g};"
        f" pull p50 at the light load, largest / smallest: {results['pull_p50_ratio']:g}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=STORES)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--rates", default=",".join(f"{rate:g}" for rate in RATES), help="events/s per store")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="server processes on the one database")
    args = parser.parse_args()
    figures = run(
        stores=args.stores,
        sizes=[int(size) for size in args.sizes.split(",")],
        rates=[float(rate) for rate in args.rates.split(",")],
        seconds=args.seconds,
        repeats=args.repeats,
        replicas=args.replicas,
    )
    print(json.dumps(figures, indent=2))
    print(table(figures))
