"""The shipped ACL (config/mosquitto/edge-gateway.acl) enforced by a real mosquitto.

Every user of docs/operations.md logs in with a password made for this run. A forbidden publish is
shown not to arrive without waiting for a timeout: the same client then publishes a message it may
publish (a sentinel), and an observer allowed to read everything waits for the sentinel. MQTT delivers
one client's messages to a subscriber in order, so once the sentinel is there, the forbidden message
would have been there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import aiomqtt
import pytest

from tests.ops.clients import REPO, Client, make_passwords, token, write_password_file
from tests.support.broker import Mosquitto

ACL = REPO / "config" / "mosquitto" / "edge-gateway.acl"
DISPLAYS = ["screen-a", "screen-b"]
DEVICES = ["tasmota_FIT01", "tasmota_FIT02"]
USERS = [
    "gateway",
    "cloud-bridge",
    "checkin",
    "pos",
    "espresense",
    "weather",
    "staff",
    "zigbee2mqtt",
    *DISPLAYS,
    *DEVICES,
    "observer",
]
# Topics outside the store's root: ESPresense and the smart devices' own (docs/devices.md).
OUTSIDE_ROOT = ("espresense/", "zigbee2mqtt/", "cmnd/", "stat/", "tele/", "devices/")
# The test's own observer, appended to a copy of the shipped file: it may read everything.
OBSERVER_RULES = "\n# test only\nuser observer\ntopic read #\n"


@dataclass(frozen=True)
class Broker:
    port: int
    passwords: dict[str, str]

    def client(self, user: str, *filters: str) -> Client:
        return Client(self.port, user, self.passwords[user], *filters)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("acl-broker")
    acl = folder / "edge-gateway.acl"
    acl.write_text(ACL.read_text() + OBSERVER_RULES)
    passwords = make_passwords(USERS)
    passwd = write_password_file(folder / "edge-gateway.passwd", passwords)
    mosquitto = Mosquitto(
        folder / "broker",
        persistence=False,
        allow_anonymous=False,
        password_file=passwd,
        acl_file=acl,
        run_as="root",
    )
    mosquitto.start()
    try:
        yield Broker(mosquitto.port, passwords)
    finally:
        mosquitto.stop()


@pytest.fixture
def root() -> str:
    """A store of its own per test: `+` in the ACL matches any store id, retained state stays apart."""
    return f"store/s-{token()}"


def topic(root: str, name: str) -> str:
    return name if name.startswith(OUTSIDE_ROOT) else f"{root}/{name}"


# ----- who may connect -----


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("gateway", "not-the-password"), ("nobody", "whatever")],
    ids=["anonymous", "wrong-password", "unknown-user"],
)
async def test_connections_without_valid_credentials_are_refused(
    broker: Broker, username: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with Client(broker.port, username, password):
            pass


# ----- what each user may publish -----

# (user, forbidden topic, a topic the same user may publish: the sentinel)
FORBIDDEN_PUBLISHES = [
    ("screen-a", "display/screen-a/content", "display/screen-a/ack"),
    ("screen-a", "display/screen-b/content", "display/screen-a/ack"),
    ("screen-a", "checkin", "display/screen-a/ack"),
    ("screen-a", "config/desired", "display/screen-a/ack"),
    ("screen-a", "display/screen-b/ack", "display/screen-a/ack"),
    ("screen-a", "display/screen-b/availability", "display/screen-a/availability"),
    ("screen-a", "gateway/status", "display/screen-a/ack"),
    ("screen-a", "display/screen-a/pairing", "display/screen-a/ack"),  # only the gateway issues codes
    ("checkin", "display/screen-a/pairing", "checkin"),
    ("screen-a", "pos/lane-1/transaction", "display/screen-a/ack"),
    ("gateway", "config/desired", "config/reported"),
    ("checkin", "display/screen-a/content", "checkin"),
    ("checkin", "config/desired", "checkin"),
    ("checkin", "pos/lane-1/transaction", "checkin"),
    ("checkin", "checkin/result/app-42", "checkin"),  # only the gateway answers check-ins
    ("screen-a", "checkin/result/app-42", "display/screen-a/ack"),
    ("pos", "checkin", "pos/lane-1/transaction"),
    ("pos", "pos/lane-1/refund", "pos/lane-1/transaction"),
    ("espresense", "checkin", "espresense/devices/phone:1/cafe"),
    ("espresense", "display/screen-a/content", "espresense/devices/phone:1/cafe"),
    ("weather", "checkin", "context/weather"),
    ("weather", "config/desired", "context/weather"),
    ("checkin", "context/weather", "checkin"),
    ("screen-a", "context/weather", "display/screen-a/ack"),
    ("cloud-bridge", "display/screen-a/content", "config/desired"),
    ("cloud-bridge", "config/reported", "config/desired"),
    ("cloud-bridge", "checkin", "config/desired"),
    ("screen-a", "device/fit-1/override", "display/screen-a/ack"),
    ("checkin", "device/fit-1/override", "checkin"),
    ("staff", "display/screen-a/content", "device/fit-1/override"),
    ("staff", "checkin", "device/fit-1/override"),
    ("staff", "staff/notice/fitting", "staff/fitting/ack"),  # only the gateway issues notices
    ("staff", "zigbee2mqtt/fit light/set", "device/fit-1/override"),
    ("tasmota_FIT01", "stat/tasmota_FIT02/RESULT", "stat/tasmota_FIT01/RESULT"),
    ("tasmota_FIT01", "tele/tasmota_FIT02/LWT", "tele/tasmota_FIT01/LWT"),
    ("tasmota_FIT01", "cmnd/tasmota_FIT02/CT", "stat/tasmota_FIT01/RESULT"),
    ("tasmota_FIT01", "device/fit-1/override", "stat/tasmota_FIT01/RESULT"),
    ("tasmota_FIT01", "zigbee2mqtt/fit light", "stat/tasmota_FIT01/RESULT"),
    ("zigbee2mqtt", "device/fit-1/override", "zigbee2mqtt/fit light"),
    ("zigbee2mqtt", "cmnd/tasmota_FIT01/CT", "zigbee2mqtt/fit light"),
]


@pytest.mark.parametrize(
    ("user", "forbidden", "sentinel"),
    FORBIDDEN_PUBLISHES,
    ids=[f"{user}-cannot-write-{forbidden}" for user, forbidden, _ in FORBIDDEN_PUBLISHES],
)
async def test_a_forbidden_publish_never_reaches_anyone(
    broker: Broker, root: str, user: str, forbidden: str, sentinel: str
) -> None:
    bad, good = token(), token()
    outside = [f"{prefix}#" for prefix in OUTSIDE_ROOT]
    async with broker.client("observer", f"{root}/#", *outside) as observer:
        async with broker.client(user) as client:
            # Retained, the worst case: accepted, it would be served to every later subscriber.
            await client.publish(topic(root, forbidden), bad, retain=True)
            await client.publish(topic(root, sentinel), good)
        await observer.wait_for_message(topic(root, sentinel), good)
        assert not observer.saw(topic(root, forbidden), bad)
        assert all(payload != bad.encode() for _, payload, _ in observer.messages)


# (writer, topic, reader): the reader, with its own rights only, receives what the writer published
ALLOWED_FLOWS = [
    ("gateway", "display/screen-a/content", "screen-a"),
    ("gateway", "display/screen-a/pairing", "screen-a"),
    ("screen-a", "display/screen-a/ack", "gateway"),
    ("screen-a", "display/screen-a/availability", "gateway"),
    ("gateway", "gateway/status", "screen-a"),  # a player's offline state (docs/player.md)
    ("checkin", "checkin", "gateway"),
    ("gateway", "checkin/result/app-42", "checkin"),
    ("pos", "pos/lane-1/transaction", "gateway"),
    ("espresense", "espresense/devices/phone:1/cafe", "gateway"),
    ("weather", "context/weather", "gateway"),
    ("cloud-bridge", "config/desired", "gateway"),
    ("gateway", "gateway/health", "cloud-bridge"),
    ("gateway", "gateway/status", "cloud-bridge"),
    ("gateway", "config/reported", "cloud-bridge"),
    ("gateway", "presence/cafe", "gateway"),
    ("staff", "device/fit-1/override", "gateway"),
    ("gateway", "staff/notice/fitting", "staff"),
    ("staff", "staff/fitting/ack", "gateway"),
    ("gateway", "zigbee2mqtt/fit light/set", "zigbee2mqtt"),
    ("zigbee2mqtt", "zigbee2mqtt/fit light", "gateway"),
    ("zigbee2mqtt", "zigbee2mqtt/fit light/availability", "gateway"),
    ("gateway", "cmnd/tasmota_FIT01/CT", "tasmota_FIT01"),
    ("tasmota_FIT01", "stat/tasmota_FIT01/RESULT", "gateway"),
    ("tasmota_FIT01", "tele/tasmota_FIT01/LWT", "gateway"),
]


@pytest.mark.parametrize(
    ("writer", "name", "reader"),
    ALLOWED_FLOWS,
    ids=[f"{writer}-to-{reader}-on-{name}" for writer, name, reader in ALLOWED_FLOWS],
)
async def test_the_contract_flows_are_allowed(
    broker: Broker, root: str, writer: str, name: str, reader: str
) -> None:
    payload = token()
    async with broker.client(reader, topic(root, name)) as subscriber:
        async with broker.client(writer) as client:
            await client.publish(topic(root, name), payload)
        await subscriber.wait_for_message(topic(root, name), payload)


async def test_a_display_reads_its_retained_content_on_connect(broker: Broker, root: str) -> None:
    manifest = token()
    async with broker.client("gateway") as gateway:
        await gateway.publish(f"{root}/display/screen-a/content", manifest, retain=True)
    async with broker.client("screen-a", f"{root}/display/screen-a/content") as display:
        await display.wait_for_message(f"{root}/display/screen-a/content", manifest)


# ----- what each user may read -----

# (reader, its subscription, forbidden topic, a topic it may read: the sentinel; the gateway publishes both)
FORBIDDEN_READS = [
    ("screen-b", "display/+/content", "display/screen-a/content", "display/screen-b/content"),
    ("screen-b", "#", "display/screen-a/content", "display/screen-b/content"),
    ("screen-b", "#", "display/screen-a/pairing", "display/screen-b/pairing"),
    ("checkin", "#", "display/screen-a/pairing", "checkin/result/app-42"),
    ("screen-a", "#", "presence/cafe", "display/screen-a/content"),
    ("screen-a", "#", "display/screen-a/ack", "display/screen-a/content"),
    ("screen-a", "#", "checkin", "display/screen-a/content"),
    ("cloud-bridge", "#", "display/screen-a/content", "gateway/health"),
    ("cloud-bridge", "#", "checkin", "gateway/health"),
    ("cloud-bridge", "#", "pos/lane-1/transaction", "gateway/health"),
    ("tasmota_FIT02", "cmnd/#", "cmnd/tasmota_FIT01/CT", "cmnd/tasmota_FIT02/CT"),
    ("staff", "#", "display/screen-a/content", "staff/notice/fitting"),
    ("staff", "#", "presence/cafe", "staff/notice/fitting"),
    ("screen-a", "#", "staff/notice/fitting", "display/screen-a/content"),
    ("screen-a", "#", "gateway/health", "gateway/status"),  # the status, not the health
]


@pytest.mark.parametrize(
    ("reader", "subscription", "forbidden", "sentinel"),
    FORBIDDEN_READS,
    ids=[f"{reader}-on-{sub}-cannot-read-{forbidden}" for reader, sub, forbidden, _ in FORBIDDEN_READS],
)
async def test_a_forbidden_read_delivers_nothing(
    broker: Broker, root: str, reader: str, subscription: str, forbidden: str, sentinel: str
) -> None:
    retained, live, good = token(), token(), token()
    bad = topic(root, forbidden)
    async with broker.client("gateway") as gateway:
        # One retained before the reader subscribes (served at subscribe time if readable) ...
        await gateway.publish(bad, retained, retain=True)
        async with broker.client(reader, topic(root, subscription)) as subscriber:
            # ... and one live, then the sentinel from the same publisher.
            await gateway.publish(bad, live)
            await gateway.publish(topic(root, sentinel), good)
            await subscriber.wait_for_message(topic(root, sentinel), good)
            assert subscriber.payloads(bad) == []
