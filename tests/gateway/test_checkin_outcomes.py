"""What a check-in's sender learns, and what happens to a token when the broker or the clock repeats it:
``checkin/result/{reply_to}``, a redelivered message (MQTT DUP) against a replay, a clock stepping back."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path

import pytest

from edge.daemon import Gateway
from edge.transport.mqtt import Inbound, RetryLater
from tests.support.broker import Mosquitto
from tests.support.clock import PinnedClock, now
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe, make_link
from tests.support.store import ROOT, StoreKit, make_store
from tests.support.wait import until

RESULTS = f"{ROOT}/checkin/result/+"


@pytest.fixture
def store(tmp_path: Path, mosquitto: Mosquitto) -> StoreKit:
    return make_store(tmp_path / "store", mosquitto.port)


def body(store: StoreKit, sub: str = "p-full", *, reply_to: str | None, **token: object) -> bytes:
    payload = json.loads(store.checkin(sub, **token))
    if reply_to is not None:
        payload["reply_to"] = reply_to
    return json.dumps(payload).encode()


def results(probe: Probe, reply_to: str) -> list[dict]:
    return probe.json_on(f"{ROOT}/checkin/result/{reply_to}")


async def test_the_app_hears_accepted_or_refused_with_the_reason_and_nothing_about_the_shopper(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    async with running_gateway(store.settings()), Probe(mosquitto.port, RESULTS) as app:
        token_body = body(store, reply_to="app-1")
        await app.publish(f"{ROOT}/checkin", token_body)
        await app.wait_for(lambda: results(app, "app-1"))
        (accepted,) = results(app, "app-1")
        assert accepted["status"] == "accepted" and accepted["v"] == 1 and "reason" not in accepted
        assert set(accepted) == {"v", "ts", "status"}  # no shopper id, no zone, no token

        # The same message again (a replay: published anew, so no DUP flag): refused, and said why.
        replay = json.loads(token_body)
        replay["reply_to"] = "app-2"
        await app.publish(f"{ROOT}/checkin", json.dumps(replay))
        await app.wait_for(lambda: results(app, "app-2"))
        assert results(app, "app-2")[0] == {
            **results(app, "app-2")[0],
            "status": "refused",
            "reason": "replayed",
        }

        expired = body(store, reply_to="app-3", exp=int(now()) - 3600, iat=int(now()) - 3900)
        await app.publish(f"{ROOT}/checkin", expired)
        unknown_zone = body(store, reply_to="app-4", zone="nowhere")
        await app.publish(f"{ROOT}/checkin", unknown_zone)
        bad_zone = json.loads(body(store, reply_to="app-5"))
        bad_zone["zone"] = "not a zone!"  # refused by the parser: the answer still reaches the app
        await app.publish(f"{ROOT}/checkin", json.dumps(bad_zone))
        bad_reply = json.loads(body(store, reply_to=None))
        bad_reply["reply_to"] = "a/b"  # not an id: nowhere to answer, refused and counted
        await app.publish(f"{ROOT}/checkin", json.dumps(bad_reply))
        await app.wait_for(lambda: all(results(app, f"app-{n}") for n in (3, 4, 5)))
        assert results(app, "app-3")[0]["reason"] == "expired"
        assert results(app, "app-4")[0]["reason"] == "unknown_zone"
        assert results(app, "app-5")[0]["reason"] == "bad_zone"
        # Answers are not retained: an app that subscribes later hears none of them. A retained one would
        # come at once on subscribing, before anything published after it: this marker.
        async with Probe(mosquitto.port, RESULTS) as late:
            await late.publish(f"{ROOT}/checkin/result/late-marker", b"marker")
            await late.wait_for(lambda: late.messages)
            assert [topic for topic, _, _ in late.messages] == [f"{ROOT}/checkin/result/late-marker"]
        assert all(not retained for _, _, retained in app.messages)


async def test_a_redelivered_checkin_is_counted_apart_from_a_replay_and_changes_nothing(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, RESULTS) as app:
        flow = gateway.generation
        assert flow is not None and gateway.ledger is not None
        payload = body(store, reply_to="app-9")
        await app.publish(f"{ROOT}/checkin", payload)
        await app.wait_for(lambda: results(app, "app-9"))
        decisions = (await gateway.ledger.table_counts())["decisions"]

        # The broker's second delivery of the very same message (its DUP flag set), as after a crash
        # between the commit and the ack: accepted again, counted as redelivered, nothing decided twice.
        again = Inbound(f"{ROOT}/checkin", payload, False, gateway.clock.monotonic(), redelivered=True)
        await flow.checkins.on_checkin(again)
        health = gateway.health()
        assert health.flow.redelivered == 1
        assert health.flow.checkins == 1
        assert "checkin.replayed" not in health.rejected
        assert (await gateway.ledger.table_counts())["decisions"] == decisions
        await app.wait_for(lambda: len(results(app, "app-9")) == 2)
        assert [r["status"] for r in results(app, "app-9")] == ["accepted", "accepted"]

        # Without the DUP flag the same bytes are a replay.
        await flow.checkins.on_checkin(Inbound(f"{ROOT}/checkin", payload, False, gateway.clock.monotonic()))
        assert gateway.health().rejected["checkin.replayed"] == 1
        assert gateway.health().flow.redelivered == 1


async def test_the_broker_marks_a_message_it_sends_again_as_redelivered(tmp_path: Path) -> None:
    """The DUP flag reaches the handlers: a message not acked (the handler could not make it durable) comes
    back on the next session flagged, and a message published anew with the same bytes does not."""
    # Its own broker, running as this user, so its persisted sessions survive the restart below.
    broker = Mosquitto(tmp_path / "broker", run_as=getpass.getuser())
    broker.start()
    link = make_link(broker.port, root="store/t1")
    seen: list[tuple[bytes, bool]] = []
    first = asyncio.Event()

    async def handler(message: Inbound) -> None:
        seen.append((message.payload, message.redelivered))
        if len(seen) == 1:
            first.set()
            raise RetryLater("disk busy")  # not durable: not acked, the broker keeps it for this session

    link.on("store/t1/in", handler)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        async with Probe(broker.port) as publisher:
            await publisher.publish("store/t1/in", b"once")
            await asyncio.wait_for(first.wait(), 10)
            broker.restart()  # the session survives (persistent), the un-acked message with it
            await until(lambda: len(seen) >= 2, 20)
        async with Probe(broker.port) as publisher:
            await publisher.publish("store/t1/in", b"once")
            await until(lambda: len(seen) >= 3)
    finally:
        link.request_stop()
        await asyncio.wait_for(task, 10)
        broker.stop()
    assert seen == [(b"once", False), (b"once", True), (b"once", False)]


async def test_a_clock_stepping_back_after_a_purge_cannot_make_a_used_token_new_again(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    clock = PinnedClock()
    payload = store.checkin("p-full", zone="cafe")
    async with running_gateway(store.settings(), clock=clock) as gateway, Probe(mosquitto.port) as app:
        await app.publish(f"{ROOT}/checkin", payload)
        await _accepted(gateway, 1)
        # An hour later the hourly purge forgets the token's claim: it could not verify any more.
        clock.offset += 3600
        purged_at = clock.wall()
        assert (await gateway.purge())["jti"] == 1
        assert "clock_behind" not in " ".join(gateway.health().alerts)
        # A power cut; the Pi comes back with the time it had saved an hour ago. The token verifies again.
        clock.offset -= 3600
        await app.publish(f"{ROOT}/checkin", payload)
        await _refused(gateway, "checkin.clock_behind", 1)
        health = gateway.health()
        assert any(alert.startswith("clock_behind:") for alert in health.alerts)
        assert health.clock is not None and health.clock.behind_s >= 3599
        assert health.flow.checkins == 1
        versions_behind = gateway.generation.board.version("screen-cafe") if gateway.generation else 0

    # A restart with the clock still behind: the floor comes back from the ledger, not from memory.
    async with running_gateway(store.settings(), clock=clock) as gateway, Probe(mosquitto.port) as app:
        await app.publish(f"{ROOT}/checkin", payload)
        await _refused(gateway, "checkin.clock_behind", 1)
        assert any(alert.startswith("clock_behind:") for alert in gateway.health().alerts)
        # Screens' versions stay above what they hold, or players would ignore new content.
        assert gateway.generation is not None
        assert gateway.generation.board.version("screen-cafe") > versions_behind
        assert gateway.generation.board.version("screen-cafe") >= int(purged_at * 1000)


async def _accepted(gateway: Gateway, count: int) -> None:
    """Until ``count`` check-ins are accepted and their claims committed."""
    ledger = gateway.ledger
    assert ledger is not None

    async def claimed() -> bool:
        return (await ledger.table_counts())["jti"] >= count

    await until(claimed)


async def _refused(gateway: Gateway, key: str, count: int) -> None:
    await until(lambda: gateway.health().rejected.get(key, 0) >= count)
