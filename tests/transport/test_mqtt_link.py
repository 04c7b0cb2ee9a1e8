"""MqttLink against a real mosquitto: status/LWT, retained republish, outbox, manual acks, bad input."""

import asyncio
import contextlib
import json
import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.config.model import MqttSettings
from edge.transport.mqtt import Inbound, MqttLink, RetryLater, backoff_delay
from edge.transport.topics import Topics, topic_matches
from tests.support.mqtt import Probe, make_link
from tests.support.wait import until

ROOT = "store/t1"


@contextlib.asynccontextmanager
async def running(link: MqttLink):
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        yield task
    finally:
        link.request_stop()
        await asyncio.wait_for(task, 5)


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(attempt, 30.0, rng) for attempt in range(40)]
    assert all(0 < d <= 30.0 for d in delays)
    assert delays[0] <= 0.25
    assert max(delays[20:]) > 14.0  # reached the cap region
    assert len({round(d, 6) for d in delays[20:]}) > 5  # jitter, not lockstep


def test_topic_matching() -> None:
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/d")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/b", "a/b/c")
    assert Topics("s/1").display_of("s/1/display/d9/ack") == "d9"
    assert Topics("s/1").display_of("s/1/display//ack") is None
    assert Topics("s/1").display_of("s/1/checkin") is None


async def test_status_online_then_stopped_and_retained_state(mosquitto) -> None:
    link = make_link(mosquitto.port)
    async with Probe(mosquitto.port, f"{ROOT}/#") as probe:
        async with running(link):
            link.publish(f"{ROOT}/display/d1/content", b'{"version":1}', retain=True)
            await probe.wait_for(lambda: probe.on(f"{ROOT}/display/d1/content"))
            await probe.wait_for(lambda: probe.json_on(f"{ROOT}/gateway/status"))
            assert probe.json_on(f"{ROOT}/gateway/status")[0]["state"] == "online"
        await probe.wait_for(lambda: probe.json_on(f"{ROOT}/gateway/status")[-1]["state"] == "stopped")
    # retained on the broker for anyone arriving later
    async with Probe(mosquitto.port, f"{ROOT}/#") as late:
        await late.wait_for(
            lambda: late.on(f"{ROOT}/display/d1/content") and late.on(f"{ROOT}/gateway/status")
        )
        assert all(retained for _, _, retained in late.messages)


async def test_reconnect_resubscribes_and_republishes(mosquitto) -> None:
    link = make_link(mosquitto.port)
    seen: list[bytes] = []

    async def handler(message: Inbound) -> None:
        seen.append(message.payload)

    link.on(f"{ROOT}/checkin", handler)
    async with running(link):
        link.publish(f"{ROOT}/display/d1/content", b"m1", retain=True)
        await until(lambda: link.outbox_depth == 0)  # m1 is on the broker
        mosquitto.kill()
        await until(lambda: not link.connected.is_set())
        link.publish(f"{ROOT}/display/d1/content", b"m2", retain=True)  # while down: kept for the reconnect
        mosquitto.start()
        await asyncio.wait_for(link.connected.wait(), 5)
        async with Probe(mosquitto.port, f"{ROOT}/display/#", f"{ROOT}/gateway/status") as probe:
            await probe.wait_for(lambda: probe.on(f"{ROOT}/display/d1/content"))
            assert probe.on(f"{ROOT}/display/d1/content")[-1] == b"m2"
            await probe.wait_for(lambda: probe.json_on(f"{ROOT}/gateway/status"))
            assert probe.json_on(f"{ROOT}/gateway/status")[-1]["state"] == "online"
            await probe.publish(f"{ROOT}/checkin", b"after-restart")
            await probe.wait_for(lambda: b"after-restart" in seen)
    assert link.counters["disconnects"] >= 1


async def test_outbox_is_bounded_while_disconnected(mosquitto) -> None:
    link = make_link(mosquitto.port, outbox_max=10)
    topic = f"{ROOT}/staff/notify"
    # A persistent session, subscribed before the outage: the broker keeps for it whatever the link sends
    # after the restart, whichever of the two reconnects first.
    watcher = {"identifier": "outbox-watcher", "clean_session": False}
    async with Probe(mosquitto.port, topic, **watcher):
        pass
    async with running(link):
        mosquitto.stop()  # graceful: the broker saves its sessions
        await until(lambda: not link.connected.is_set())
        for index in range(25):
            link.publish(topic, str(index).encode())
        assert link.outbox_depth == 10
        assert link.counters["outbox_dropped"] == 15
        mosquitto.start()
        async with Probe(mosquitto.port, topic, **watcher) as probe:
            await probe.wait_for(lambda: b"24" in probe.on(topic))
            assert link.outbox_depth == 0
    # the newest ten survived, in order, each once
    assert [int(p) for p in probe.on(topic)] == list(range(15, 25))


async def test_retry_later_is_redelivered_and_bad_handlers_are_contained(mosquitto) -> None:
    link = make_link(mosquitto.port, max_payload_bytes=1024)
    attempts: list[bytes] = []

    async def flaky(message: Inbound) -> None:
        attempts.append(message.payload)
        if message.payload == b"defer" and attempts.count(b"defer") == 1:
            raise RetryLater("disk busy")
        if message.payload == b"boom":
            raise ValueError("handler bug")

    link.on(f"{ROOT}/checkin", flaky)
    async with running(link):
        async with Probe(mosquitto.port) as probe:
            await probe.publish(f"{ROOT}/checkin", b"defer")
            await probe.publish(f"{ROOT}/checkin", b"boom")
            await probe.publish(f"{ROOT}/checkin", b"x" * 2048)
            await probe.publish(f"{ROOT}/checkin", b"fine")
            await probe.wait_for(lambda: b"fine" in attempts)
    assert link.counters["deferred"] == 1
    assert link.counters["handler_errors"] == 1
    assert link.counters["oversized"] == 1
    # a new session with the same client id: the broker redelivers what we did not acknowledge
    link2 = make_link(mosquitto.port)
    link2.on(f"{ROOT}/checkin", flaky)
    async with running(link2):
        async with Probe(mosquitto.port) as probe:
            await probe.wait_for(lambda: attempts.count(b"defer") == 2)
            # The broker redelivers a session's unacknowledged messages before anything newer: once this
            # one has arrived, so has every redelivery there will be.
            await probe.publish(f"{ROOT}/checkin", b"sentinel")
            await probe.wait_for(lambda: b"sentinel" in attempts)
    assert attempts.count(b"boom") == 1  # acknowledged despite the bug: not redelivered forever
    assert attempts.count(b"fine") == 1


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe\x00", b"{" * 5000])
async def test_odd_payloads_reach_handler_as_bytes(mosquitto, payload: bytes) -> None:
    link = make_link(mosquitto.port)
    got: list[bytes] = []

    async def handler(message: Inbound) -> None:
        got.append(message.payload)

    link.on(f"{ROOT}/checkin", handler)
    async with running(link), Probe(mosquitto.port) as probe:
        await probe.publish(f"{ROOT}/checkin", payload)
        await probe.publish(f"{ROOT}/checkin", b"marker")
        await probe.wait_for(lambda: b"marker" in got)
    assert got[0] == payload
    assert json.dumps(link.counters)  # counters stay serialisable for health


async def test_hundreds_of_retained_states_go_out_without_pending_call_warnings(
    mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A store's start: every display's manifest is queued before the link is up (issue 12: 304 displays
    logged 228 "There are N pending publish calls" lines, aiomqtt's alarm at 10 against our window of 16)."""
    link = make_link(mosquitto.port)
    for index in range(400):
        link.publish(f"{ROOT}/display/d{index}/content", b'{"v":1}', retain=True)
    with caplog.at_level(logging.WARNING):
        async with running(link), Probe(mosquitto.port, f"{ROOT}/display/+/content") as probe:
            await probe.wait_for(lambda: len({topic for topic, _, _ in probe.messages}) == 400)
    assert link.counters["published"] >= 400
    assert not [r for r in caplog.records if "pending publish calls" in r.getMessage()]


async def test_oversized_payloads_are_logged_once_then_at_most_once_a_minute_redacted(
    mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    link = MqttLink(
        MqttSettings(port=mosquitto.port, reconnect_max_s=0.5, keepalive_s=5, max_payload_bytes=256),
        client_id="gw-oversized",
        topics=Topics(ROOT),
        password=None,
        clock=clock,
        version="test",
        started_wall=clock.wall(),
    )
    mac = "a4:83:e7:1c:22:9f"
    got: list[bytes] = []

    async def handler(message: Inbound) -> None:
        got.append(message.payload)

    link.on("sensors/+/+", handler, log_topic=lambda topic: "sensors/<device>/" + topic.rsplit("/", 1)[-1])
    # paho's per-packet DEBUG lines name topics too (aiomqtt keeps its "mqtt" logger at WARNING; an operator
    # debugging the broker link may lower it)
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mqtt"):
        async with running(link), Probe(mosquitto.port) as probe:
            for _ in range(30):
                await probe.publish(f"sensors/{mac}/hall", b"x" * 300)
            await probe.publish(f"sensors/{mac}/hall", b"small")
            await probe.wait_for(lambda: got == [b"small"] and link.counters["oversized"] == 30)
            clock.advance(61)
            await probe.publish(f"sensors/{mac}/hall", b"y" * 300)
            await probe.publish(f"sensors/{mac}/hall", b"small")
            await probe.wait_for(lambda: len(got) == 2 and link.counters["oversized"] == 31)
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if mac in line], [line for line in lines if mac in line][:3]
    oversized = [line for line in lines if "dropped oversized" in line]
    assert len(oversized) == 2, oversized
    assert "sensors/<device>/hall" in oversized[0]
    assert "at most every 60 s" in oversized[0]
    assert "29 more" in oversized[1]
    assert any("Received PUBLISH" in line and "sensors/<device>/hall" in line for line in lines)


_SEGMENTS = st.sampled_from(["a", "b", "c", "+"])


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(_SEGMENTS, min_size=1, max_size=3).map("/".join)
        | st.lists(st.sampled_from(["a", "b"]), max_size=2).map(lambda parts: "/".join([*parts, "#"])),
        max_size=12,
    ),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map("/".join),
)
def test_a_topic_goes_to_the_first_registered_filter_that_matches(patterns: list[str], topic: str) -> None:
    # Exact filters are looked up and only wildcard filters scanned: the same answer as scanning them all.
    link = make_link(1)
    handlers = []
    for pattern in patterns:

        async def handler(_message: Inbound) -> None:
            return None

        handlers.append(handler)
        link.on(pattern, handler)
    expected = next((i for i, pattern in enumerate(patterns) if topic_matches(pattern, topic)), None)
    pattern, handler, _ = link._route(topic)
    if expected is None:
        assert handler is None
    else:
        assert (pattern, handler) == (patterns[expected], handlers[expected])
