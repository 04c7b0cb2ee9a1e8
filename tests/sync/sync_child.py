"""A gateway's sync half in its own process, to be SIGKILLed at random points by tests/sync/test_kill.py.

``run``: the real SyncService (pull + push loops, real Ledger file, real HTTP) plus a producer that queues
events and prints ``E <id>`` once each is durable. ``drain``: pull until the cloud has nothing more, push
until the outbox is empty, print the cursor and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path

from edge.config.model import SyncSettings
from edge.identity import ConsentStore, ProfileCache, TokenVerifier
from edge.ledger import Ledger
from edge.sync.mirror import Mirror
from edge.sync.service import SyncService
from edge.sync.wire import EventClass
from tests.support.clock import PinnedClock

CLASSES = (EventClass.TELEMETRY, EventClass.TELEMETRY, EventClass.CONVERSION, EventClass.PRIVACY)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["run", "drain"])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--tag", default="x")
    args = parser.parse_args()
    clock = PinnedClock()  # the parent test's timeline, which its reference store runs on too
    settings = SyncSettings(
        enabled=True,
        url=args.url,
        token_env="UNUSED",
        pull_interval_s=0.01,
        push_interval_s=0.01,
        batch_events=7,  # small batches: many push boundaries for the kill to land on
        page_limit=3,  # small pages: many cursor commits
        retry_max_s=0.05,
        request_timeout_s=2.0,
    )
    async with Ledger(args.db, clock) as ledger:
        consents = ConsentStore(ledger, clock)
        await consents.load()
        profiles = ProfileCache()
        verifier = TokenVerifier({}, args.store, clock)
        mirror = Mirror(consents=consents, profiles=profiles, verifier=verifier)
        service = SyncService(
            settings,
            store_id=args.store,
            token=args.token,
            ledger=ledger,
            mirror=mirror,
            consents=consents,
            profiles=profiles,
            clock=clock,
        )
        if args.mode == "drain":
            async with service.client:
                await service.puller.pull()
                await service.pusher.drain()
            print(f"CURSOR {await ledger.replica.cursor()}", flush=True)
            return
        print("READY", flush=True)
        async with asyncio.TaskGroup() as group:
            group.create_task(service.run())
            for index in itertools.count():
                cls = CLASSES[index % len(CLASSES)]
                event_id = await ledger.outbox.enqueue(
                    "kill_test", cls, {"tag": args.tag, "n": index}, shopper_id=f"p-{index % 5}"
                )
                sys.stdout.write(f"E {event_id}\n")
                sys.stdout.flush()
                await asyncio.sleep(0.002)


if __name__ == "__main__":
    asyncio.run(main())
