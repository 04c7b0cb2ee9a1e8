"""MqttLink against a real mosquitto with password authentication, TLS and mutual TLS.

Every key, certificate and password file is generated at run time under ``tmp_path``; nothing secret
lives in the repository. A refused connection must never escape ``run()``: the link counts it, backs
off, retries, and leaves cleanly on ``request_stop``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.config import read_mqtt_password
from edge.config.model import GatewaySettings, MqttSettings, StoreSettings, TlsSettings, ZoneSettings
from edge.transport.mqtt import MqttLink
from tests.support.broker import Mosquitto
from tests.support.mqtt import make_link
from tests.support.pki import make_ca, make_leaf, write_cert, write_key

ROOT = "store/t1"
STATUS = f"{ROOT}/gateway/status"
USER = "gateway"
PASSWORD = "s3cret pass-Ω"  # a space and a non-ASCII character: passed through untouched
# How long a link that must not connect is watched: several backoff rounds at reconnect_max_s=0.5.
REFUSED_WINDOW_S = 1.5
# request_stop() while refused must end run() promptly (the daemon's shutdown waits for it).
STOP_WITHIN_S = 1.0
# ----- run-time PKI -----


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the broker serves
    misnamed_cert: Path  # signed by ``ca`` but issued to another host name, not 127.0.0.1
    misnamed_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca("edge test CA")
    server_key, server_cert = make_leaf(
        "127.0.0.1",
        ca_key,
        ca_cert,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client_cert = make_leaf("gw-test", ca_key, ca_cert, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    _, other_ca_cert = make_ca("some other CA")
    misnamed_key, misnamed_cert = make_leaf(
        "broker.example",
        ca_key,
        ca_cert,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.DNSName("broker.example")],
    )
    paths = Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
        misnamed_cert=folder / "misnamed.pem",
        misnamed_key=folder / "misnamed.key",
    )
    write_cert(paths.ca, ca_cert)
    write_cert(paths.server_cert, server_cert)
    write_key(paths.server_key, server_key)
    write_cert(paths.client_cert, client_cert)
    write_key(paths.client_key, client_key)
    write_cert(paths.other_ca, other_ca_cert)
    write_cert(paths.misnamed_cert, misnamed_cert)
    write_key(paths.misnamed_key, misnamed_key)
    return paths


# ----- brokers with our own configuration -----


class SecureMosquitto(Mosquitto):
    """The shared helper's start/stop/log, with this file's own listener, auth and TLS lines."""

    def __init__(self, workdir: Path, conf: str) -> None:
        super().__init__(workdir, persistence=False)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, mosquitto would drop to the 'mosquitto' user, which cannot read tmp_path.
            "user root\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            "log_type all\n" + conf
        )


def password_file(folder: Path, user: str = USER, password: str = PASSWORD) -> Path:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.fail("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    path = folder / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), user, password], check=True, capture_output=True)
    return path


StartBroker = Callable[[str], SecureMosquitto]


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    brokers: list[SecureMosquitto] = []

    def start(conf: str) -> SecureMosquitto:
        broker = SecureMosquitto(tmp_path / f"broker{len(brokers)}", conf)
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield start
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def auth_broker(tmp_path: Path, start_broker: StartBroker) -> SecureMosquitto:
    return start_broker(f"allow_anonymous false\npassword_file {password_file(tmp_path)}\n")


def tls_conf(pki: Pki, *, require_certificate: bool) -> str:
    return (
        "allow_anonymous true\n"
        f"cafile {pki.ca}\n"
        f"certfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\n"
        "tls_version tlsv1.2\n"  # a minimum in mosquitto 2.0: TLS 1.3 is negotiated
        f"require_certificate {'true' if require_certificate else 'false'}\n"
    )


# ----- the link under test, and a client that checks what it published -----


async def assert_connects_and_goes_online(link: MqttLink, port: int, **probe: Any) -> None:
    """Run the link, see its retained 'online' status with an authenticated client, stop it cleanly."""
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 3)
        status = await read_status(port, **probe)
        assert status["state"] == "online"
        assert status["version"] == "test"
    finally:
        link.request_stop()
        await asyncio.wait_for(task, 3)
    assert task.result() is None
    assert link.counters["connect_failures"] == 0


async def assert_refused_cleanly(link: MqttLink, window_s: float = REFUSED_WINDOW_S) -> None:
    """Never connected, retried with backoff, counted, and ``run()`` returns on request_stop."""
    task = asyncio.create_task(link.run())
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(link.connected.wait(), window_s)
        assert not task.done(), "run() left on its own while the broker refused it"
        assert link.counters["connect_failures"] >= 2  # the first refusal, then at least one retry
        assert link.counters["disconnects"] == 0
        assert link.state in {"connecting", "backoff"}
    finally:
        link.request_stop()
        # A refused attempt ends at once, so run() is in its backoff wait and leaves immediately.
        await asyncio.wait_for(task, STOP_WITHIN_S)
    assert task.result() is None
    assert link.state == "stopped"
    assert not link.connected.is_set()


async def read_status(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    tls: aiomqtt.TLSParameters | None = None,
    insecure: bool = False,
) -> dict[str, Any]:
    """The retained gateway status, read by a separate client with its own credentials."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="security-probe",
        username=username,
        password=password,
        tls_params=tls,
        tls_insecure=insecure if tls is not None else None,
        timeout=3,
    ) as client:
        await client.subscribe(STATUS, qos=1)
        async with asyncio.timeout(3):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                body: dict[str, Any] = json.loads(message.payload)
                return body
    raise AssertionError("no status message")


def probe_tls(pki: Pki, *, client_cert: bool = False) -> aiomqtt.TLSParameters:
    return aiomqtt.TLSParameters(
        ca_certs=str(pki.ca),
        certfile=str(pki.client_cert) if client_cert else None,
        keyfile=str(pki.client_key) if client_cert else None,
    )


# ----- password authentication -----


async def test_broker_refuses_anonymous_clients(auth_broker: SecureMosquitto) -> None:
    # Guards the other tests: a link that "connects" here really authenticated.
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", auth_broker.port, identifier="anon", timeout=3):
            pass


async def test_right_password_connects_and_publishes_online(
    auth_broker: SecureMosquitto, tmp_path: Path
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    settings = GatewaySettings(
        store=StoreSettings(id="t1"),
        zones=[ZoneSettings(id="a")],
        mqtt=MqttSettings(username=USER, password_file=secret),
    )
    # As the daemon does: the password comes from read_mqtt_password, never from the TOML.
    link = make_link(auth_broker.port, username=USER, password=read_mqtt_password(settings))
    await assert_connects_and_goes_online(link, auth_broker.port, username=USER, password=PASSWORD)


@pytest.mark.parametrize(
    ("username", "password"),
    [(USER, "wrong-password"), (USER, None), ("intruder", PASSWORD), (None, None)],
    ids=["wrong-password", "no-password", "unknown-user", "anonymous"],
)
async def test_refused_credentials_retry_with_backoff_and_stop_cleanly(
    auth_broker: SecureMosquitto,
    caplog: pytest.LogCaptureFixture,
    username: str | None,
    password: str | None,
) -> None:
    link = make_link(auth_broker.port, username=username, password=password)
    with caplog.at_level(logging.DEBUG):
        await assert_refused_cleanly(link)
    assert "refused" in caplog.text
    if password is not None:
        assert password not in caplog.text  # the secret never reaches the log


async def test_state_is_stopped_after_a_graceful_stop(auth_broker: SecureMosquitto) -> None:
    link = make_link(auth_broker.port, username=USER, password=PASSWORD)
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 3)
    link.request_stop()
    await asyncio.wait_for(task, 3)
    assert not link.connected.is_set()
    assert link.state == "stopped"


def test_read_mqtt_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(**mqtt: Any) -> GatewaySettings:
        return GatewaySettings(
            store=StoreSettings(id="t1"), zones=[ZoneSettings(id="a")], mqtt=MqttSettings(**mqtt)
        )

    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", PASSWORD)
    assert read_mqtt_password(settings(password_env="EDGE_TEST_MQTT_PASSWORD")) == PASSWORD

    secret = tmp_path / "mqtt-password"
    secret.write_text(f"{PASSWORD}\n", encoding="utf-8")  # systemd credentials end with a newline
    assert read_mqtt_password(settings(password_file=secret)) == PASSWORD

    monkeypatch.delenv("EDGE_TEST_MQTT_PASSWORD")
    assert read_mqtt_password(settings(password_env="EDGE_TEST_MQTT_PASSWORD")) is None
    assert read_mqtt_password(settings()) is None


# ----- TLS and mutual TLS -----


async def test_tls_with_trusted_ca_connects(start_broker: StartBroker, pki: Pki) -> None:
    broker = start_broker(tls_conf(pki, require_certificate=False))
    link = make_link(broker.port, tls=TlsSettings(enabled=True, ca_file=pki.ca))
    await assert_connects_and_goes_online(link, broker.port, tls=probe_tls(pki))


async def test_tls_with_password_connects(start_broker: StartBroker, pki: Pki, tmp_path: Path) -> None:
    conf = tls_conf(pki, require_certificate=False).replace(
        "allow_anonymous true\n", f"allow_anonymous false\npassword_file {password_file(tmp_path)}\n"
    )
    broker = start_broker(conf)
    link = make_link(
        broker.port, username=USER, password=PASSWORD, tls=TlsSettings(enabled=True, ca_file=pki.ca)
    )
    await assert_connects_and_goes_online(
        link, broker.port, username=USER, password=PASSWORD, tls=probe_tls(pki)
    )


@pytest.mark.parametrize("trust", ["other-ca", "system-store"])
async def test_tls_with_untrusted_ca_is_refused_cleanly(
    start_broker: StartBroker, pki: Pki, trust: str
) -> None:
    broker = start_broker(tls_conf(pki, require_certificate=False))
    ca_file = pki.other_ca if trust == "other-ca" else None
    link = make_link(broker.port, tls=TlsSettings(enabled=True, ca_file=ca_file))
    await assert_refused_cleanly(link)


async def test_tls_hostname_is_verified_unless_insecure(start_broker: StartBroker, pki: Pki) -> None:
    conf = (
        tls_conf(pki, require_certificate=False)
        .replace(str(pki.server_cert), str(pki.misnamed_cert))
        .replace(str(pki.server_key), str(pki.misnamed_key))
    )
    broker = start_broker(conf)
    # A trusted CA is not enough: the certificate must name the host the link dials (127.0.0.1).
    await assert_refused_cleanly(
        make_link(broker.port, tls=TlsSettings(enabled=True, ca_file=pki.ca)), window_s=1.0
    )
    # tls.insecure (lab use) skips only the name check; the chain is still verified.
    insecure = TlsSettings(enabled=True, ca_file=pki.ca, insecure=True)
    probe = aiomqtt.TLSParameters(ca_certs=str(pki.ca))
    await assert_connects_and_goes_online(
        make_link(broker.port, tls=insecure), broker.port, tls=probe, insecure=True
    )
    await assert_refused_cleanly(
        make_link(broker.port, tls=TlsSettings(enabled=True, ca_file=pki.other_ca, insecure=True)),
        window_s=1.0,
    )


async def test_plain_link_to_a_tls_listener_is_refused_cleanly(start_broker: StartBroker, pki: Pki) -> None:
    broker = start_broker(tls_conf(pki, require_certificate=False))
    await assert_refused_cleanly(make_link(broker.port))


async def test_mutual_tls_with_client_certificate_connects(start_broker: StartBroker, pki: Pki) -> None:
    broker = start_broker(tls_conf(pki, require_certificate=True))
    tls = TlsSettings(enabled=True, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    link = make_link(broker.port, tls=tls)
    await assert_connects_and_goes_online(link, broker.port, tls=probe_tls(pki, client_cert=True))


async def test_mutual_tls_without_client_certificate_is_refused_cleanly(
    start_broker: StartBroker, pki: Pki
) -> None:
    broker = start_broker(tls_conf(pki, require_certificate=True))
    link = make_link(broker.port, tls=TlsSettings(enabled=True, ca_file=pki.ca))
    await assert_refused_cleanly(link)
