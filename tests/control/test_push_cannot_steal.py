"""A push signed with the cloud's real config key cannot steal or widen anything (issue 12, item 3).

Each push of the issue goes through a real mosquitto into the real gateway, whose store holds a broker
password and a cloud token in files: pointing the broker, the cloud or a camera at a listener of ours,
reading any file as a password, turning off TLS checks, opening the metrics endpoint to the network,
raising token lifetime or retention, trusting another key, probing whether a file exists. Each is
``rejected`` with its reason and key path; the listener, which records every connection and byte, gets
none; no secret and no probed path shows up in a report or a log line; and the gateway carries on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from edge.control.snapshots import ConfigSnapshots, ControlState, Snapshot
from tests.control.conftest import DESIRED, REPORTED, ControlKit, make_control_store
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe

BROKER_PASSWORD = "broker-pw-7f3a9c01"
CLOUD_TOKEN = "cloud-bearer-5e1d2b77"
SECRET = "ssh-private-key-contents-0b9e"


class Listener:
    """A TCP listener on a loopback port: every connection and every byte it receives is kept."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while data := await reader.read(65536):
            self.received += data
        writer.close()


def _store_with_secrets(tmp_path: Path, port: int) -> ControlKit:
    control = make_control_store(tmp_path / "store", port)
    workdir = control.store.workdir
    (workdir / "mqtt-password").write_text(BROKER_PASSWORD)
    (workdir / "cloud-token").write_text(CLOUD_TOKEN)
    (tmp_path / "id_ed25519").write_text(SECRET)  # a readable file a push should not learn about
    config = control.store.config_path
    text = config.read_text().replace(
        "[mqtt]\n", '[mqtt]\nusername = "gateway"\npassword_file = "mqtt-password"\n', 1
    )
    config.write_text(text)
    return control


def _pushes(listener: int, secret: Path, missing: Path) -> list[tuple[str, dict[str, Any], str, str]]:
    """(what, overlay, reason, key path named in the report) for each attempt of the issue."""
    here = f"127.0.0.1:{listener}"
    return [
        (
            "broker elsewhere",
            {"mqtt": {"host": "127.0.0.1", "port": listener}},
            "forbidden_key",
            "mqtt.host, mqtt.port",
        ),
        (
            "any file as password",
            {"mqtt": {"password_file": str(secret)}},
            "forbidden_key",
            "mqtt.password_file",
        ),
        ("an env var as password", {"mqtt": {"password_env": "HOME"}}, "forbidden_key", "mqtt.password_env"),
        (
            "cloud over http elsewhere",
            {"sync": {"enabled": True, "url": f"http://{here}/", "token_file": "cloud-token"}},
            "forbidden_key",
            "sync.enabled, sync.url, sync.token_file",
        ),
        (
            "no TLS checks",
            {"mqtt": {"tls": {"enabled": True, "insecure": True}}},
            "forbidden_key",
            "mqtt.tls",
        ),
        (
            "metrics to the network",
            {"health": {"metrics_host": "0.0.0.0", "metrics_port": listener}},
            "forbidden_key",
            "health.metrics_host, health.metrics_port",
        ),
        (
            "long tokens",
            {"identity": {"max_token_lifetime_s": 10**9}},
            "forbidden_key",
            "identity.max_token_lifetime_s",
        ),
        ("another token key", {"identity": {"public_key_files": [str(secret)]}}, "forbidden_key", "identity"),
        (
            "keep data for ever",
            {"ledger": {"retention_days": 10**6}},
            "forbidden_key",
            "ledger.retention_days",
        ),
        (
            "camera at our listener",
            {"cameras": [{"id": "cam", "source": f"http://{here}/stream", "zone": "cafe"}]},
            "forbidden_value",
            "cameras.0.source",
        ),
        (
            "camera on the internet",
            {"cameras": [{"id": "cam", "source": "rtsp://198.51.100.7/live", "zone": "cafe"}]},
            "forbidden_value",
            "cameras.0.source",
        ),
        (
            "camera from a file",
            {"cameras": [{"id": "cam", "source": str(secret), "zone": "cafe"}]},
            "forbidden_value",
            "cameras.0.source",
        ),
        (
            "probe a file that exists",
            {"decisions": {"offers_file": str(secret)}},
            "forbidden_value",
            "decisions.offers_file",
        ),
        (
            "probe a file that does not",
            {"decisions": {"offers_file": str(missing)}},
            "forbidden_value",
            "decisions.offers_file",
        ),
        ("debug logs", {"logging": {"level": "DEBUG"}}, "forbidden_value", "logging.level"),
    ]


async def test_no_push_can_steal_a_credential_or_send_a_byte(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    control = _store_with_secrets(tmp_path, mosquitto.port)
    store = control.store
    secret, missing = tmp_path / "id_ed25519", tmp_path / "no-such-key"
    async with (
        Listener() as listener,
        Probe(store.port, REPORTED) as probe,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        assert gateway.generation.link is not None and gateway.control is not None
        link, settings = gateway.generation.link, gateway.settings
        pushes = _pushes(listener.port, secret, missing)
        for version, (what, overlay, reason, key) in enumerate(pushes, start=1):
            # One at a time, each answered before the next (a queued push would be superseded, not judged).
            await probe.publish(DESIRED, control.push(version, overlay), retain=True)
            await probe.wait_for(lambda n=version: len(probe.json_on(REPORTED)) >= n, timeout=10)
            report = probe.json_on(REPORTED)[version - 1]
            assert report["status"] == "rejected", (what, report)
            assert report["version"] == version and report["current"] == 0, (what, report)
            assert report["error"].startswith(f"{reason}: {key}"), (what, report)
        errors = [report["error"] for report in probe.json_on(REPORTED)]
        # A file that exists and one that does not are refused in the same words: nothing to probe with.
        assert errors[-3] == errors[-2]
        # The gateway never moved: same settings object, same broker connection, nothing applied or pending.
        assert gateway.settings is settings and gateway.generation.link is link
        assert link.state == "connected" and link.counters["disconnects"] == 0
        assert gateway.control.state.current == 0 and gateway.control.state.pending is None
        assert (
            gateway.control.counters["applied"] == 0
            and gateway.generation.sync is None
            and gateway.generation.cameras == ()
        )
        # ...and still takes a legitimate push (live), which also orders every earlier push before this point.
        good = len(pushes) + 1
        await probe.publish(DESIRED, control.push(good, {"presence": {"checkin_timeout_s": 60}}), retain=True)
        await probe.wait_for(lambda: len(probe.json_on(REPORTED)) >= good, timeout=10)
        assert probe.json_on(REPORTED)[-1]["status"] == "applied"
        assert gateway.generation.link is link
        # Not one connection, not one byte reached the listener: no password, no token, no shopper id.
        assert listener.connections == 0 and bytes(listener.received) == b""
        # (the listener does record: a control connection of our own is seen)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"control")
        await writer.drain()
        writer.close()
        await probe.wait_for(lambda: bytes(listener.received) == b"control")
    reports = b"".join(payload for topic, payload, _ in probe.messages if topic == REPORTED).decode()
    logs = caplog.text
    for text in (
        BROKER_PASSWORD,
        CLOUD_TOKEN,
        SECRET,
        str(secret),
        str(missing),
        "not found",
        "No such file",
    ):
        assert text not in reports, text
        assert text not in logs, text


async def test_a_snapshot_from_before_the_allow_list_is_not_run_at_start(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A store upgraded with a pushed snapshot that moved the broker (allowed before issue 12): at start the
    file runs alone, loudly (config_snapshot_invalid), and the listener hears nothing."""
    control = _store_with_secrets(tmp_path, mosquitto.port)
    async with Listener() as listener:
        snapshots = ConfigSnapshots(control.state_dir)
        snapshots.save(Snapshot(4, {"mqtt": {"host": "127.0.0.1", "port": listener.port}}, 0.0))
        snapshots.write_state(ControlState(current=4, pending=None, highest_seen=4))
        store = control.store
        async with running_gateway(store.settings(), config_path=store.config_path) as gateway:
            assert gateway.settings.mqtt.port == mosquitto.port
            assert gateway.control is not None and "config_snapshot_invalid" in gateway.control.flags
            assert "config_snapshot_invalid: see control in gateway/health" in gateway.health().alerts
        assert listener.connections == 0 and bytes(listener.received) == b""
