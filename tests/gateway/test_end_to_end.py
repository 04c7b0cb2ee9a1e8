"""The whole gateway in-process against a real mosquitto: check-in -> manifest -> ack -> exposure row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from edge.daemon import Gateway
from edge.identity import generate_keypair
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, StoreKit, make_store
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"


def running(store: StoreKit) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return running_gateway(store.settings())


def _personal(manifests: list[dict]) -> list[dict]:
    return [m for m in manifests if m.get("decision_id")]


def _rows(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def store(tmp_path: Path, mosquitto: Mosquitto) -> StoreKit:
    return make_store(tmp_path / "store", mosquitto.port)


async def test_checkin_to_manifest_to_ack_to_exposure(store: StoreKit, mosquitto: Mosquitto) -> None:
    async with running(store) as gateway, Probe(mosquitto.port, f"{ROOT}/#") as display:
        await display.wait_for(lambda: display.json_on(CONTENT))
        idle = display.json_on(CONTENT)[-1]
        assert idle["fallback"] is True
        assert idle["data"] == {"playlist": "cafe"}

        await display.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
        manifest = _personal(display.json_on(CONTENT))[-1]
        assert manifest["display"] == "screen-cafe"
        assert manifest["version"] > idle["version"]
        assert manifest["offer_id"] is not None
        assert manifest["fallback"] is False
        presence = display.json_on(f"{ROOT}/presence/cafe")[-1]
        assert (presence["people"], presence["identified"]) == (1, 1)
        assert "p-full" not in json.dumps(display.json_on(f"{ROOT}/presence/cafe"))

        ack = {
            "v": 1,
            "version": manifest["version"],
            "decision_id": manifest["decision_id"],
            "status": "shown",
        }
        await display.publish(f"{ROOT}/display/screen-cafe/ack", ack)
        await display.wait_for(
            lambda: gateway.generation is not None and gateway.generation.stats.exposures == 1
        )
        assert gateway.ledger is not None
        exposures = await gateway.ledger.exposures()
        assert [e["decision_id"] for e in exposures] == [manifest["decision_id"]]
        # the same ack again is stored once
        await display.publish(f"{ROOT}/display/screen-cafe/ack", ack)
        await display.wait_for(lambda: gateway.generation.rejects.counts[("ack", "duplicate")] == 1)
    db = store.workdir / "ledger.sqlite"
    assert _rows(db, "select count(*) from exposures") == [(1,)]
    decision = _rows(
        db, f"select shopper_id, offer_id from decisions where decision_id = '{manifest['decision_id']}'"
    )
    assert decision == [("p-full", manifest["offer_id"])]


async def test_measurement_and_personalization_consents(store: StoreKit, mosquitto: Mosquitto) -> None:
    decisions: list = []
    async with (
        running_gateway(store.settings(), observers=[decisions.append]) as gateway,
        Probe(mosquitto.port, f"{ROOT}/display/#") as display,
    ):
        assert gateway.generation is not None
        await display.publish(f"{ROOT}/checkin", store.checkin("p-nomeasure", zone="cafe"))
        await display.wait_for(lambda: len(decisions) == 1)
        await display.publish(f"{ROOT}/checkin", store.checkin("p-anon", zone="entrance"))
        await display.wait_for(lambda: len(decisions) == 2)
        await display.publish(f"{ROOT}/checkin", store.checkin("p-unknown", zone="entrance"))
        await display.wait_for(lambda: len(decisions) == 3)
    by_shopper = {d.shopper_id: d for d in decisions}
    assert by_shopper["p-nomeasure"].personalized is True
    assert by_shopper["p-anon"].personalized is False  # no personalization consent: context only
    assert by_shopper["p-unknown"].personalized is False  # no consent on record at all
    stored = dict(_rows(store.workdir / "ledger.sqlite", "select decision_id, shopper_id from decisions"))
    assert stored[by_shopper["p-nomeasure"].decision_id] is None  # no measurement: not stored under their id
    assert stored[by_shopper["p-anon"].decision_id] == "p-anon"
    assert stored[by_shopper["p-unknown"].decision_id] is None


async def test_bad_tokens_are_refused_and_counted(store: StoreKit, mosquitto: Mosquitto) -> None:
    other_key, _ = generate_keypair()
    now = int(clock.now())
    replayed = store.checkin("p-full")
    cases = {
        "bad_signature": store.checkin("p-full", key=other_key),
        "expired": store.checkin("p-full", iat=now - 900, exp=now - 600),
        "wrong_audience": store.checkin("p-full", aud="another-store"),
        "missing_claim": store.checkin("p-full", jti=None),
        "malformed": json.dumps({"v": 1, "token": "not.a.jwt", "zone": "cafe"}).encode(),
    }
    async with running(store) as gateway, Probe(mosquitto.port, f"{ROOT}/display/#") as display:
        assert gateway.generation is not None
        await display.publish(f"{ROOT}/checkin", replayed)
        await display.wait_for(lambda: gateway.generation.stats.checkins == 1)
        await display.publish(f"{ROOT}/checkin", replayed)
        for payload in cases.values():
            await display.publish(f"{ROOT}/checkin", payload)
        await display.wait_for(lambda: sum(gateway.generation.rejects.counts.values()) == len(cases) + 1)
        counts = gateway.generation.rejects.as_dict()
        for reason in [*cases, "replayed"]:
            assert counts.get(f"checkin.{reason}") == 1, (reason, counts)
        assert gateway.generation.stats.checkins == 1
        assert gateway.generation.decider.decisions == 1
    # the replay cache is durable: the same token is refused after a restart too
    async with running(store) as gateway, Probe(mosquitto.port) as client:
        assert gateway.generation is not None
        await client.publish(f"{ROOT}/checkin", replayed)
        await client.wait_for(lambda: gateway.generation.rejects.counts[("checkin", "replayed")] == 1)


BAD_PAYLOADS = [b"", b"\xff\xfe\xfd", b"{", b"[]", b"null", b'{"v": 2}', b'{"token": 5}', b"x" * 40_000]


async def test_junk_on_every_inbound_topic_is_counted_and_harmless(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    topics = [
        f"{ROOT}/checkin",
        f"{ROOT}/display/screen-cafe/ack",
        f"{ROOT}/display/screen-cafe/availability",
        f"{ROOT}/display/no-such-screen/ack",
    ]
    async with running(store) as gateway, Probe(mosquitto.port, f"{ROOT}/display/#") as display:
        assert gateway.generation is not None and gateway.generation.link is not None
        for topic in topics:
            for payload in BAD_PAYLOADS:
                await display.publish(topic, payload)
        # an empty payload on the availability topic clears it (a removed display): not a rejection
        expected = len(topics) * len(BAD_PAYLOADS) - 1

        def counted() -> int:
            return (
                sum(gateway.generation.rejects.counts.values())
                + gateway.generation.link.counters["oversized"]
            )

        await display.wait_for(lambda: counted() == expected)
        assert gateway.generation.link.counters["handler_errors"] == 0
        assert gateway.generation.link.counters["oversized"] == len(topics)
        # the empty availability took the screen offline (removed) until it says it is back
        assert gateway.generation.board.stats()["screen-cafe"].online is False
        await display.publish(f"{ROOT}/display/screen-cafe/availability", "online")
        await display.wait_for(lambda: gateway.generation.board.stats()["screen-cafe"].online)
        # and the gateway still serves
        await display.publish(f"{ROOT}/checkin", store.checkin("p-full"))
        await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
        assert gateway.health().rejected["checkin.not_json"] >= 1


async def test_broker_restart_republishes_status_and_manifests(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "volatile-broker", persistence=False)
    broker.start()
    try:
        store = make_store(tmp_path / "store", broker.port)
        async with running(store) as gateway, Probe(broker.port, f"{ROOT}/display/#") as display:
            await display.publish(f"{ROOT}/checkin", store.checkin("p-full"))
            await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
            shown = _personal(display.json_on(CONTENT))[-1]
            link = gateway.generation.link
            assert link is not None
            broker.kill()
            await until(lambda: not link.connected.is_set())  # the gateway knows the broker is gone
            broker.start()  # a broker without persistence: every retained message is gone
            await asyncio.wait_for(link.connected.wait(), 10)
            async with Probe(broker.port, f"{ROOT}/#") as late:
                await late.wait_for(lambda: late.json_on(CONTENT) and late.json_on(f"{ROOT}/gateway/status"))
                assert late.json_on(CONTENT)[-1]["decision_id"] == shown["decision_id"]
                assert late.json_on(f"{ROOT}/gateway/status")[-1]["state"] == "online"
                assert late.json_on(f"{ROOT}/presence/cafe")[-1]["people"] == 1
            # resubscribed: check-ins work again
            async with Probe(broker.port) as phone:
                await phone.publish(f"{ROOT}/checkin", store.checkin("p-nomeasure", zone="entrance"))
                await phone.wait_for(
                    lambda: gateway.generation is not None and gateway.generation.stats.checkins == 2
                )
    finally:
        broker.stop()


async def test_a_corrupt_ledger_is_moved_aside_loudly_and_service_goes_on(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    db = store.workdir / "ledger.sqlite"
    db.write_bytes(b"this is not a database, it is what a power cut left behind" * 200)
    async with running(store) as gateway, Probe(mosquitto.port, f"{ROOT}/#") as display:
        await display.wait_for(lambda: display.json_on(f"{ROOT}/gateway/health"))
        health = display.json_on(f"{ROOT}/gateway/health")[-1]
        assert health["ledger"]["corrupted_moved_to"]
        assert health["alerts"][0].startswith("ledger_corrupt")
        await display.publish(f"{ROOT}/checkin", store.checkin("p-full"))
        await display.wait_for(lambda: _personal(display.json_on(CONTENT)))
        assert gateway.generation is not None
    moved = list(store.workdir.glob("ledger.sqlite.corrupt-*"))
    assert len(moved) == 1
    assert moved[0].read_bytes().startswith(b"this is not a database")
    assert _rows(db, "select count(*) from decisions") == [(1,)]
