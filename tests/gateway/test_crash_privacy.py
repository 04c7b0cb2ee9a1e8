"""The gateway SIGKILLed at random instants while shoppers withdraw consents at a kiosk and the cloud asks for
exports: every action is applied exactly once (one consent event per action, never two, none lost), every
request is answered exactly once (one audit row and one `privacy_export` event per request id).

The cloud is unreachable on purpose, so every event stays in the outbox to be counted. Each action is by a
shopper of its own and each request for a shopper of its own: a second event is a fault, a missing one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from edge.events import Purpose
from edge.identity.keys import sign_token
from edge.ledger.eventcodec import KIND_CODES
from tests.gateway.test_crash_safety import Traffic, kill, online_since, rows, seed_consents, wait_until
from tests.gateway.test_process import start_gateway
from tests.support import clock as timeline
from tests.support.broker import Mosquitto, free_port
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section

KILLS = 25
RATE_PER_S = 40
SHOPPERS = 4_000


def shopper(index: int) -> str:
    return f"p-v{index:05d}"


@dataclass
class Sent:
    actions: dict[str, str] = field(default_factory=dict)  # jti -> shopper
    requests: dict[str, str] = field(default_factory=dict)  # request id -> shopper


async def status_watch(port: int, traffic: Traffic) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="crash-status") as client:
        await client.subscribe(f"{ROOT}/gateway/status", qos=1)
        traffic.subscribed.set()
        async for message in client.messages:
            if isinstance(message.payload, bytes) and message.payload:
                traffic.statuses.append(json.loads(message.payload))
                traffic.arrived.set()


async def kiosk_and_cloud(port: int, store: StoreKit, sent: Sent, stop: asyncio.Event) -> None:
    """Alternately a withdrawal at the kiosk and the cloud's export request, each for a new shopper (QoS 1)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="crash-kiosk") as client:
        index = 0
        while not stop.is_set() and index < SHOPPERS:
            who = shopper(index)
            if index % 2 == 0:
                jti = f"k-{index:05d}"
                body = {
                    "v": 1,
                    "token": store.token(who, jti=jti),
                    "action": "consent",
                    "purpose": "personalization",
                    "granted": False,
                }
                await client.publish(f"{ROOT}/privacy/action", json.dumps(body), qos=1)
                sent.actions[jti] = who
            else:
                now = int(timeline.now())
                request = {
                    "aud": STORE,
                    "kind": "export",
                    "request_id": f"r-{index:05d}",
                    "sub": who,
                    "iat": now,
                }
                token = sign_token(store.private_pem, {**request, "exp": now + 3600})
                await client.publish(f"{ROOT}/privacy/request", token.encode(), qos=1)
                sent.requests[f"r-{index:05d}"] = who
            index += 1
            await asyncio.sleep(1 / RATE_PER_S)


async def test_sigkill_at_random_instants_applies_and_answers_each_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(15)
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    workdir = tmp_path / "store"
    workdir.mkdir()
    unreachable = f"http://127.0.0.1:{free_port()}"
    store = make_store(workdir, broker.port, seed=False, sync=sync_section(unreachable, "t", workdir))
    db = store.workdir / "ledger.sqlite"
    await seed_consents(db, [shopper(i) for i in range(SHOPPERS)], Purpose.PERSONALIZATION)
    traffic, sent, stop = Traffic(), Sent(), asyncio.Event()
    watch = asyncio.create_task(status_watch(broker.port, traffic))
    sender: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(traffic.subscribed.wait(), 10)
        for number in range(KILLS):
            seen = len(traffic.statuses)
            proc = start_gateway(store)
            try:
                await wait_until(lambda seen=seen: online_since(traffic, seen), traffic, 30)
                if sender is None:
                    sender = asyncio.create_task(kiosk_and_cloud(broker.port, store, sent, stop))
                await asyncio.sleep(rng.uniform(0.0, 0.4))
            finally:
                kill(proc)
            assert proc.returncode == -signal.SIGKILL, f"kill {number}: the gateway ended by itself"
        stop.set()
        assert sender is not None
        await sender
        seen = len(traffic.statuses)
        proc = start_gateway(store)
        try:
            await wait_until(lambda: online_since(traffic, seen), traffic, 30)
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                claimed = {row[0] for row in rows(db, "SELECT jti FROM jti")}
                answered = {row[0] for row in rows(db, "SELECT request_id FROM privacy_audit")}
                if set(sent.actions) <= claimed and set(sent.requests) <= answered:
                    break
                await asyncio.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    finally:
        stop.set()
        for task in (watch, sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task
        broker.stop()

    assert len(sent.actions) > 50 and len(sent.requests) > 50, "too little traffic to mean anything"
    # Actions: each token claimed, each shopper's choice stored, one consent event each, never two.
    claimed = {row[0] for row in rows(db, "SELECT jti FROM jti")}
    assert set(sent.actions) <= claimed
    withdrawn = {
        row[0]
        for row in rows(
            db, "SELECT shopper_id FROM consents WHERE purpose = 'personalization' AND granted = 0"
        )
    }
    assert set(sent.actions.values()) == withdrawn
    consent_events = rows(db, f"SELECT shopper_id FROM outbox WHERE kind = {KIND_CODES['consent']}")
    assert sorted(row[0] for row in consent_events) == sorted(sent.actions.values())
    # Requests: one audit row and one export event each.
    audit = rows(db, "SELECT request_id FROM privacy_audit")
    assert sorted(row[0] for row in audit) == sorted(sent.requests)
    exports = rows(db, "SELECT shopper_id FROM outbox WHERE kind = 'privacy_export'")
    assert sorted(row[0] for row in exports) == sorted(sent.requests.values())
