"""The shipped broker files, run as installed: config/mosquitto/mosquitto.conf as a conf.d drop-in under
a Debian-style main file, the shipped ACL, and the example bridge to a cloud broker over TLS.

Only what cannot be run here is rewritten (port, file locations, the cloud's address and password);
every rewrite must match exactly once, so a reshaped file breaks this test instead of passing untested.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiomqtt
import pytest

from tests.ops.clients import REPO, Client, make_passwords, token, write_password_file
from tests.support.broker import Mosquitto
from tests.support.pki import make_server_pki

SHIPPED = REPO / "config" / "mosquitto"
STORE = "store-001"
ROOT = f"store/{STORE}"
CLOUD_HOST = "localhost"  # the name in the cloud's certificate; the bridge checks it


def rewrite(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"expected exactly one line matching {pattern!r} in the shipped file, found {count}"
    return new


class ConfiguredMosquitto(Mosquitto):
    """The shared helper's start/stop/log around a configuration written by the test."""

    def __init__(self, workdir: Path, conf: Callable[[int, int], str]) -> None:
        super().__init__(workdir, persistence=False)
        self.conf.write_text(conf(self.port, self.ws_port))


@dataclass(frozen=True)
class Brokers:
    store_port: int
    store_ws_port: int
    cloud_port: int
    store_passwords: dict[str, str]
    cloud_passwords: dict[str, str]
    cloud_ca: Path

    def store(self, user: str, *filters: str) -> Client:
        return Client(self.store_port, user, self.store_passwords[user], *filters)

    def cloud(self, *filters: str) -> Client:
        return Client(
            self.cloud_port,
            "cloud-admin",
            self.cloud_passwords["cloud-admin"],
            *filters,
            host=CLOUD_HOST,
            tls_ca=self.cloud_ca,
        )


def cloud_conf(folder: Path, passwd: Path, port: int, _ws_port: int) -> str:
    """The cloud's broker: TLS on ``port``, no websockets listener."""
    pki = make_server_pki(folder, CLOUD_HOST)
    return (
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.cert}\nkeyfile {pki.key}\ntls_version tlsv1.2\n"
        f"allow_anonymous false\npassword_file {passwd}\nuser root\n"
        f"log_dest file {folder}/mosquitto.log\n"
    )


def store_conf(
    folder: Path, port: int, ws_port: int, *, cloud_port: int, cloud_ca: Path, bridge_password: str
) -> str:
    """Debian's main mosquitto.conf, with the shipped drop-in and the bridge example in conf.d/."""
    conf_d = folder / "conf.d"
    conf_d.mkdir()
    dropin = (SHIPPED / "mosquitto.conf").read_text()
    dropin = rewrite(dropin, r"^listener 1883$", f"listener {port} 127.0.0.1")
    dropin = rewrite(dropin, r"^listener 9001$", f"listener {ws_port} 127.0.0.1")
    dropin = rewrite(dropin, r"^password_file /etc/mosquitto/", f"password_file {folder}/")
    dropin = rewrite(dropin, r"^acl_file /etc/mosquitto/", f"acl_file {folder}/")
    (conf_d / "edge-gateway.conf").write_text(dropin)
    bridge = (SHIPPED / "bridge.conf.example").read_text().replace("STORE_ID", STORE)
    bridge = rewrite(bridge, r"^address .*$", f"address {CLOUD_HOST}:{cloud_port}")
    bridge = rewrite(bridge, r"^bridge_cafile .*$", f"bridge_cafile {cloud_ca}")
    bridge = rewrite(bridge, r"^remote_password .*$", f"remote_password {bridge_password}")
    (conf_d / "edge-gateway-bridge.conf").write_text(bridge)
    (folder / "edge-gateway.acl").write_text((SHIPPED / "edge-gateway.acl").read_text())
    return (
        # What Debian's /etc/mosquitto/mosquitto.conf says, in this folder (and `user root`: see broker.py).
        "user root\n"
        "persistence true\n"
        f"persistence_location {folder}/\n"
        f"log_dest file {folder}/mosquitto.log\n"
        f"include_dir {conf_d}\n"
    )


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    cloud_dir = tmp_path_factory.mktemp("cloud")
    store_dir = tmp_path_factory.mktemp("store")
    cloud_passwords = make_passwords([f"bridge-{STORE}", "cloud-admin"])
    store_passwords = make_passwords(["gateway", "screen-a"])
    cloud = ConfiguredMosquitto(
        cloud_dir / "broker",
        partial(cloud_conf, cloud_dir, write_password_file(cloud_dir / "passwd", cloud_passwords)),
    )
    cloud.start()
    try:
        write_password_file(store_dir / "edge-gateway.passwd", store_passwords)
        store = ConfiguredMosquitto(
            store_dir / "broker",
            partial(
                store_conf,
                store_dir,
                cloud_port=cloud.port,
                cloud_ca=cloud_dir / "cloud-ca.pem",
                bridge_password=cloud_passwords[f"bridge-{STORE}"],
            ),
        )
        store.start()
        try:
            yield Brokers(
                store.port,
                store.ws_port,
                cloud.port,
                store_passwords,
                cloud_passwords,
                cloud_dir / "cloud-ca.pem",
            )
        finally:
            store.stop()
    finally:
        cloud.stop()


@pytest.fixture(scope="module")
def bridge_up(brokers: Brokers) -> Brokers:
    """Waits (without a fixed sleep) until the bridge has announced itself at the cloud."""

    async def wait() -> None:
        state = f"$SYS/broker/connection/bridge-{STORE}/state"
        async with brokers.cloud(state) as cloud:
            await cloud.wait_for_message(state, "1", timeout=15)

    asyncio.run(wait())
    return brokers


async def test_the_store_broker_refuses_anonymous_clients(brokers: Brokers) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with Client(brokers.store_port, None, None):
            pass


async def test_the_store_broker_applies_the_acl(brokers: Brokers) -> None:
    bad, good = token(), token()
    async with brokers.store("gateway", f"{ROOT}/#") as gateway:
        async with brokers.store("screen-a") as display:
            await display.publish(f"{ROOT}/display/screen-a/content", bad)
            await display.publish(f"{ROOT}/display/screen-a/ack", good)
        await gateway.wait_for_message(f"{ROOT}/display/screen-a/ack", good)
        assert gateway.payloads(f"{ROOT}/display/screen-a/content") == []


async def test_the_websockets_listener_has_the_same_users_and_acl(brokers: Brokers) -> None:
    """The browser pages' listener (MQTT over WebSockets): no anonymous clients, and a display may write
    its ack but not its own content, exactly as over TCP."""

    def over_websockets(user: str | None) -> aiomqtt.Client:
        password = None if user is None else brokers.store_passwords[user]
        return aiomqtt.Client(
            "127.0.0.1", brokers.store_ws_port, username=user, password=password, transport="websockets"
        )

    with pytest.raises(aiomqtt.MqttError):
        async with over_websockets(None):
            pass
    bad, good = token(), token()
    async with brokers.store("gateway", f"{ROOT}/#") as gateway:
        async with over_websockets("screen-a") as display:
            await display.publish(f"{ROOT}/display/screen-a/content", bad, qos=1)
            await display.publish(f"{ROOT}/display/screen-a/ack", good, qos=1)
        await gateway.wait_for_message(f"{ROOT}/display/screen-a/ack", good)
        assert gateway.payloads(f"{ROOT}/display/screen-a/content") == []


async def test_desired_config_comes_in_and_nothing_else(bridge_up: Brokers) -> None:
    other_store, content, desired = token(), token(), token()
    async with bridge_up.store("gateway", f"{ROOT}/#", "store/+/config/desired") as gateway:
        async with bridge_up.cloud() as cloud:
            await cloud.publish("store/store-999/config/desired", other_store, retain=True)
            await cloud.publish(f"{ROOT}/display/screen-a/content", content)
            await cloud.publish(f"{ROOT}/config/desired", desired, retain=True)
        await gateway.wait_for_message(f"{ROOT}/config/desired", desired)
        assert gateway.payloads(f"{ROOT}/display/screen-a/content") == []
        assert gateway.payloads("store/store-999/config/desired") == []


async def test_health_status_and_reported_go_out_and_nothing_else(bridge_up: Brokers) -> None:
    sent = {name: token() for name in ("gateway/health", "gateway/status", "config/reported")}
    private = {name: token() for name in ("display/screen-a/content", "presence/cafe", "checkin")}
    async with bridge_up.cloud("store/#") as cloud:
        async with bridge_up.store("gateway") as gateway:
            for name, payload in private.items():
                await gateway.publish(f"{ROOT}/{name}", payload)
            for name, payload in sent.items():
                await gateway.publish(f"{ROOT}/{name}", payload, retain=True)
        for name, payload in sent.items():
            await cloud.wait_for_message(f"{ROOT}/{name}", payload)
        for name in private:
            assert cloud.payloads(f"{ROOT}/{name}") == []
