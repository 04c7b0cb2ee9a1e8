"""The gateway against the reference profile store, both for real: profiles and consents down, events up."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.daemon import Gateway
from edge.events import Purpose
from edge.identity import generate_keypair, sign_token
from edge.identity.tokens import RejectReason
from edge.ledger import Ledger
from edge.sync.service import SyncService
from edge.sync.wire import EventClass
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"


@contextlib.asynccontextmanager
async def cloud_and_gateway(
    tmp_path: Path, mosquitto: Mosquitto, **sync_options: object
) -> AsyncIterator[tuple[object, StoreKit, Gateway]]:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(
            workdir,
            mosquitto.port,
            seed=False,
            sync=sync_section(cloud.base_url, token, workdir, **sync_options),
        )
        async with running_gateway(store.settings()) as gateway:
            yield cloud, store, gateway


def _personal(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("decision_id")]


def _sync(gateway: Gateway) -> SyncService:
    assert gateway.generation.sync is not None
    return gateway.generation.sync


async def _first_pull(gateway: Gateway) -> tuple[SyncService, Ledger]:
    """The gateway's sync and ledger, once its first pull has completed."""
    sync = _sync(gateway)
    assert gateway.ledger is not None
    await until(lambda: sync.puller.stats.pages >= 1)
    return sync, gateway.ledger


async def _drained(ledger: Ledger) -> bool:
    return (await ledger.outbox.stats()).events == 0


async def test_profiles_and_consents_arrive_events_go_up_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.put_shopper("p-cloud", {"affinity": {"coffee": 0.95}, "visits": 4})
        for purpose in ("personalization", "measurement"):
            await cloud.put_consent("p-cloud", purpose, True, source="app")
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(
            workdir, mosquitto.port, seed=False, sync=sync_section(cloud.base_url, token, workdir)
        )
        async with (
            running_gateway(store.settings()) as gateway,
            Probe(mosquitto.port, f"{ROOT}/#") as display,
        ):
            assert gateway.generation is not None
            flow = gateway.generation
            await until(lambda: flow.consents.has("p-cloud", Purpose.PERSONALIZATION))
            assert flow.profiles.get("p-cloud") == {"affinity": {"coffee": 0.95}, "visits": 4}

            await display.publish(f"{ROOT}/checkin", store.checkin("p-cloud", zone="cafe"))
            await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
            manifest = _personal(display.json_on(CONTENT))[-1]
            ack = {
                "v": 1,
                "version": manifest["version"],
                "decision_id": manifest["decision_id"],
                "status": "shown",
            }
            await display.publish(f"{ROOT}/display/screen-cafe/ack", ack)

            async def both_arrived() -> bool:
                kinds = Counter(event["kind"] for event in await cloud.events(STORE))
                return kinds["decision"] >= 1 and kinds["exposure"] == 1

            await until(both_arrived)
            events = await cloud.events(STORE)
            decision = next(e for e in events if e["kind"] == "decision")
            assert decision["data"]["decision_id"] == manifest["decision_id"]
            assert decision["shopper_id"] == "p-cloud"  # measurement was granted
            ids = [event["id"] for event in events]
            assert len(ids) == len(set(ids))
            # The cloud's own consents are not echoed back as events.
            assert not [e for e in events if e["kind"] == "consent"]

            # A withdrawal in the cloud reaches the gateway's memory and disk.
            await cloud.put_consent("p-cloud", "personalization", False, source="app")
            await until(lambda: not flow.consents.has("p-cloud", Purpose.PERSONALIZATION))

            # Erasure: everything local goes, and a tombstone stays.
            await cloud.erase("p-cloud")
            await until(lambda: "p-cloud" not in flow.profiles and not flow.consents.granted("p-cloud"))
            assert gateway.ledger is not None
            assert gateway.ledger.replica.tombstone("p-cloud") is not None
            health = display.json_on(f"{ROOT}/gateway/health")
        db = workdir / "ledger.sqlite"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("select count(*) from consents where shopper_id='p-cloud'").fetchone() == (0,)
            assert conn.execute("select count(*) from profiles where shopper_id='p-cloud'").fetchone() == (0,)
            assert conn.execute("select count(*) from decisions where shopper_id='p-cloud'").fetchone() == (
                0,
            )
        assert any(h.get("sync") for h in health)


async def test_cache_miss_fetches_the_profile_and_a_slow_cloud_never_holds_the_screen(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # Pulls far apart: a shopper added after the first pull is known only through a fetch.
    async with cloud_and_gateway(tmp_path, mosquitto, pull_interval_s=3600, profile_timeout_s=1.0) as (
        cloud,
        store,
        gateway,
    ):
        sync = _sync(gateway)
        await until(lambda: sync.puller.stats.pages >= 1)
        await cloud.put_shopper("p-new", {"affinity": {"coffee": 0.9}})
        await cloud.put_consent("p-new", "personalization", True)
        assert gateway.generation is not None
        flow = gateway.generation
        async with Probe(mosquitto.port, f"{ROOT}/#") as display:
            await display.publish(f"{ROOT}/checkin", store.checkin("p-new", zone="cafe"))
            await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
            assert sync.fetcher.outcomes["fetched"] == 1
            assert flow.profiles.get("p-new") == {"affinity": {"coffee": 0.9}}
            assert flow.consents.has("p-new", Purpose.PERSONALIZATION)

            # A shopper the cloud does not know: a 404, remembered, and the screen is served anyway.
            await display.publish(f"{ROOT}/checkin", store.checkin("p-stranger", zone="entrance"))
            await display.wait_for(
                lambda: _personal(display.json_on(f"{ROOT}/display/screen-entrance/content"))
            )
            assert sync.fetcher.outcomes["not_found"] == 1

            # The cloud hangs: the check-in waits at most profile_timeout_s, then decides without a profile.
            cloud.faults.set("slow", delay_s=5.0)
            before = len(_personal(display.json_on(CONTENT)))
            await display.publish(f"{ROOT}/checkin", store.checkin("p-late", zone="cafe"))
            await display.wait_for(lambda: len(_personal(display.json_on(CONTENT))) > before, timeout=4.0)
            assert sync.fetcher.outcomes["timeout"] == 1
            cloud.faults.reset()


async def test_outage_backlog_drains_in_order_zero_lost_zero_duplicated(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with cloud_and_gateway(tmp_path, mosquitto) as (cloud, _store, gateway):
        sync, ledger = await _first_pull(gateway)
        await cloud.stop()
        # A long outage, simulated: hours of telemetry and a few privacy events queue up while the cloud is away.
        for index in range(3000):
            await ledger.outbox.enqueue(
                "presence", EventClass.TELEMETRY, {"zone": "cafe", "people": index % 7}
            )
        for index in range(20):
            await ledger.outbox.enqueue(
                "consent",
                EventClass.PRIVACY,
                {"purpose": "measurement", "granted": False},
                shopper_id=f"p-{index}",
            )
        await until(lambda: sync.push_loop.state.failing and sync.pull_loop.state.failing)
        queued = await ledger.outbox.peek(100_000, 1 << 30)
        expected = [json.loads(entry.body)["id"] for entry in queued]
        assert len(expected) == 3020
        failures_during_outage = sum(sync.push_loop.state.failures.values())
        assert failures_during_outage >= 1
        await cloud.start()

        await until(lambda: _drained(ledger), timeout=30)
        received = [event["id"] for event in await cloud.events(STORE)]
        assert [i for i in received if i in set(expected)] == expected  # in order, each once
        assert len(received) == len(set(received))
        assert not sync.push_loop.state.failing


@pytest.mark.parametrize("mode", ["http500", "bad_json", "truncated", "close", "slow"])
async def test_malformed_answers_are_survived(tmp_path: Path, mosquitto: Mosquitto, mode: str) -> None:
    async with cloud_and_gateway(tmp_path, mosquitto, request_timeout_s=0.5) as (cloud, _store, gateway):
        sync, ledger = await _first_pull(gateway)
        cloud.faults.set(mode, delay_s=2.0)
        ids = [await ledger.outbox.enqueue("presence", EventClass.TELEMETRY, {"n": n}) for n in range(50)]
        await cloud.put_shopper("p-during", {"visits": 1})
        await until(lambda: sync.push_loop.state.failing and sync.pull_loop.state.failing)
        cloud.faults.reset()

        await until(lambda: _drained(ledger))
        await until(lambda: gateway.generation is not None and "p-during" in gateway.generation.profiles)
        received = [event["id"] for event in await cloud.events(STORE)]
        assert [i for i in received if i in set(ids)] == ids
        assert len(received) == len(set(received))


async def test_keys_offers_and_inventory_from_the_cloud_apply_live(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with cloud_and_gateway(tmp_path, mosquitto) as (cloud, store, gateway):
        sync = _sync(gateway)
        assert gateway.generation is not None
        flow = gateway.generation
        await until(lambda: sync.puller.stats.pages >= 1)
        # A token key the store has never seen, pushed by the cloud: its tokens are accepted at once.
        private_pem, public_pem = generate_keypair()
        await cloud.put_token_key("cloud-kid-1", public_pem.decode())
        await until(lambda: "cloud-kid-1" in flow.verifier.key_ids)
        async with Probe(mosquitto.port, f"{ROOT}/#") as display:
            checkin = store.checkin("p-key", zone="cafe")
            body = json.loads(checkin)
            body["token"] = _token_with(private_pem, "cloud-kid-1", body["token"])
            await display.publish(f"{ROOT}/checkin", json.dumps(body).encode())
            await until(lambda: flow.stats.checkins == 1)
            # Revoked: refused at once.
            await cloud.delete_token_key("cloud-kid-1")
            await until(lambda: "cloud-kid-1" not in flow.verifier.key_ids)
            body["token"] = _token_with(private_pem, "cloud-kid-1", store.token("p-key"))
            await display.publish(f"{ROOT}/checkin", json.dumps(body).encode())
            await until(lambda: flow.verifier.rejections[RejectReason.UNKNOWN_KEY] == 1)

        # An offer only the cloud has, then out of stock.
        offer = {
            "id": "cloud-espresso",
            "title": "Espresso from the cloud",
            "category": "coffee",
            "value": 2.5,
            "zones": ["cafe"],
        }
        await cloud.put_offer(offer)
        await until(lambda: "cloud-espresso" in flow.decider.engine.offer_ids)
        active = {o.id: o.active for o in flow.decider.engine.catalog.offers}
        assert active["cloud-espresso"] is True
        await cloud.put_inventory("cloud-espresso", False, 0)
        await until(
            lambda: not {o.id: o.active for o in flow.decider.engine.catalog.offers}["cloud-espresso"]
        )
        await cloud.delete_offer("cloud-espresso")
        await until(lambda: "cloud-espresso" not in flow.decider.engine.offer_ids)


async def test_disk_bound_drops_telemetry_first_and_keeps_privacy(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # 40 kB of outbox: a few hundred events.
    async with cloud_and_gateway(tmp_path, mosquitto, outbox_max_mb=0.04) as (cloud, _store, gateway):
        _sync_service, ledger = await _first_pull(gateway)
        await cloud.stop()
        privacy, conversions = [], []
        for index in range(1500):
            await ledger.outbox.enqueue("presence", EventClass.TELEMETRY, {"zone": "cafe", "n": index})
            if index % 50 == 0:
                privacy.append(
                    await ledger.outbox.enqueue(
                        "consent",
                        EventClass.PRIVACY,
                        {"purpose": "measurement", "granted": False},
                        shopper_id="p-1",
                    )
                )
                conversions.append(
                    await ledger.outbox.enqueue("conversion", EventClass.CONVERSION, {"n": index})
                )
        stats = await ledger.outbox.stats()
        assert stats.max_bytes is not None and stats.bytes <= stats.max_bytes
        assert stats.by_class["telemetry"].dropped > 1000
        assert stats.by_class["privacy"].dropped == 0
        assert stats.by_class["conversion"].dropped == 0
        # The drops are visible to the operator (the health loop runs every second in the test store).
        await until(lambda: any(a.startswith("sync_outbox_dropped") for a in gateway.health().alerts))
        sync = gateway.health().sync
        assert sync is not None and sync.outbox.by_class["privacy"].dropped == 0

        await cloud.start()

        await until(lambda: _drained(ledger), timeout=30)
        received = {event["id"] for event in await cloud.events(STORE)}
        assert set(privacy) <= received
        assert set(conversions) <= received


def _token_with(private_pem: bytes, kid: str, template: str) -> str:
    """The claims of ``template`` (a token the test store signed) signed again by ``private_pem`` as ``kid``."""
    import jwt  # noqa: PLC0415

    claims = jwt.decode(template, options={"verify_signature": False})
    return sign_token(private_pem, claims, kid=kid)


async def test_an_event_the_cloud_cannot_take_is_parked_and_the_rest_flows(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with cloud_and_gateway(tmp_path, mosquitto) as (cloud, _store, gateway):
        sync, ledger = await _first_pull(gateway)
        await cloud.stop()
        before = [await ledger.outbox.enqueue("presence", EventClass.TELEMETRY, {"n": n}) for n in range(30)]
        # 1.2 MB: over the contract's 1 MiB per request even alone (a producer's bug, not the cloud's).
        big = await ledger.outbox.enqueue("conversion", EventClass.CONVERSION, {"blob": "x" * 1_200_000})
        after = [await ledger.outbox.enqueue("presence", EventClass.TELEMETRY, {"n": n}) for n in range(30)]
        await cloud.start()

        async def only_the_big_one_left() -> bool:
            return (await ledger.outbox.stats()).events == 1 and sync.pusher.stats.parked == 1

        await until(only_the_big_one_left)
        received = [event["id"] for event in await cloud.events(STORE)]
        assert [i for i in received if i in set(before + after)] == before + after
        assert big not in received
        # Never given up for a whole request's 413: kept, counted, alerted, and listed for the operator.
        (parked,) = await ledger.dead_letters.due(9e12, limit=5, latest_wall=9e12)
        assert parked.event_id == big
        await until(lambda: any(a.startswith("sync_events_parked") for a in gateway.health().alerts))
        health = gateway.health().sync
        assert health is not None and health.parked.by_class["conversion"] == 1
        assert health.dead_letter.given_up == 0 and health.push.given_up == 0


async def test_a_cloud_restored_from_elsewhere_resets_the_cursor(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with cloud_and_gateway(tmp_path, mosquitto) as (cloud, store, gateway):
        sync = _sync(gateway)
        assert gateway.generation is not None
        flow = gateway.generation
        await cloud.put_shopper("p-old", {"visits": 1})
        await until(lambda: "p-old" in flow.profiles)
        # The cloud comes back on another database (a restore, a migration): our cursor means nothing there.
        await cloud.stop()
        token = (store.workdir / "cloud-token").read_text()
        cloud.db_url = f"sqlite://{tmp_path / 'restored.db'}"
        await cloud.start()
        await cloud.admin("PUT", f"/admin/v1/stores/{STORE}", {"token": token})
        await cloud.put_shopper("p-new", {"visits": 2})
        await until(lambda: "p-new" in flow.profiles)
        assert sync.puller.stats.resets == 1
