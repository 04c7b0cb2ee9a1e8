"""The store dashboard (docs/dashboard.md): who may read it (loopback only without a password, basic auth in
constant time with throttled failures off it), what it shows (an allow-listed snapshot: counts, screens,
devices, health, decisions; never a shopper id), and its live stream updating when a check-in happens on a
real gateway with a real broker."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.clock import ManualClock, iso_utc
from edge.config import ConfigError, load_settings, missing_files, parse_settings
from edge.config.dashboard import DashboardSettings
from edge.control.dashboard import STATIC, DashboardError, DashboardServer, FailureThrottle
from edge.control.preflight import load_checked
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import CONSENTED_BEFORE_S, ROOT, StoreKit, make_store

# Identified shoppers with ids that appear nowhere else, so a byte search for them cannot match by chance.
SHOPPER_IDS = ("shopper-7c1e-orchid-4417", "shopper-2b9d-walnut-9083")
BASE = {"store": {"id": "s1"}, "zones": [{"id": "cafe"}]}
# Generous bounds for a test that fails rather than hangs; nothing is measured against them.
STREAM_GUARD_S = 20.0


def _settings(**dashboard: Any) -> Any:
    return parse_settings({**BASE, "dashboard": {"enabled": True, **dashboard}}, base_dir=Path("/srv"))


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ----- bind rules (the schema) -----------------------------------------------------------------------------


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_bind_needs_no_password(bind: str) -> None:
    assert _settings(bind=bind).dashboard.bind == bind


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "gateway.local"])
def test_any_other_bind_without_a_password_is_a_config_error(bind: str) -> None:
    with pytest.raises(ConfigError) as error:
        _settings(bind=bind)
    assert error.value.problems == [
        f"dashboard: bind {bind!r} is not a loopback address: the dashboard needs password_file or "
        "password_env there (it shows the store's state to anyone who can reach it)"
    ]


def test_a_lan_bind_with_a_password_file_or_env_validates_and_the_file_is_relative() -> None:
    settings = _settings(bind="192.168.1.20", password_file="dashboard-password")
    assert settings.dashboard.password_file == Path("/srv/dashboard-password")
    assert _settings(bind="0.0.0.0", password_env="DASHBOARD_PASSWORD").dashboard.password_env


def test_a_disabled_dashboard_is_not_held_to_the_rule() -> None:
    settings = parse_settings(
        {**BASE, "dashboard": {"enabled": False, "bind": "0.0.0.0"}}, base_dir=Path("/srv")
    )
    assert not settings.dashboard.enabled


def test_a_password_is_never_written_in_the_file() -> None:
    with pytest.raises(ConfigError) as error:
        _settings(bind="0.0.0.0", password="hunter2")
    assert "'password' must not be written in the config file" in error.value.problems[0]


def test_a_missing_password_file_or_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_TEST_NO_SUCH_VARIABLE", raising=False)
    by_file = _settings(bind="0.0.0.0", password_file="nowhere")
    by_env = _settings(bind="0.0.0.0", password_env="EDGE_TEST_NO_SUCH_VARIABLE")
    assert "dashboard.password_file: file not found" in missing_files(by_file, show_paths=False)
    assert (
        "dashboard.password_env: environment variable EDGE_TEST_NO_SUCH_VARIABLE is not set"
        in missing_files(by_env)
    )


def test_check_config_refuses_an_empty_password_off_loopback(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", 1883)
    store.config_path.write_text(
        store.config_path.read_text()
        + '\n[dashboard]\nenabled = true\nbind = "0.0.0.0"\npassword_file = "dashboard-password"\n'
    )
    password = store.workdir / "dashboard-password"
    password.write_text("  \n")
    with pytest.raises(ConfigError) as error:
        load_checked(store.config_path)
    assert error.value.problems == [
        "dashboard.password_file: empty; a dashboard on '0.0.0.0' needs a password"
    ]
    password.write_text("correct horse\n")
    assert load_checked(store.config_path).dashboard.bind == "0.0.0.0"


def test_the_server_refuses_a_lan_address_with_an_empty_password() -> None:
    settings = DashboardSettings(enabled=True, bind="192.168.1.20", password_env="X")
    with pytest.raises(DashboardError):
        DashboardServer(settings, password=None, snapshot=dict, clock=ManualClock())


# ----- the failure throttle --------------------------------------------------------------------------------


def test_failures_are_throttled_per_address_for_a_minute() -> None:
    manual = ManualClock()
    throttle = FailureThrottle(manual, limit=3)
    for _ in range(2):
        throttle.failed("10.0.0.9")
    assert throttle.retry_after_s("10.0.0.9") is None
    throttle.failed("10.0.0.9")
    assert throttle.retry_after_s("10.0.0.9") == 60.0
    assert throttle.retry_after_s("10.0.0.10") is None  # another address is not held back
    manual.advance(59.0)
    assert throttle.retry_after_s("10.0.0.9") == 1.0
    manual.advance(1.0)
    assert throttle.retry_after_s("10.0.0.9") is None  # a new minute: a new allowance
    throttle.failed("10.0.0.9")
    assert throttle.retry_after_s("10.0.0.9") is None


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(ManualClock(), limit=1)
    for index in range(5000):
        throttle.failed(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert len(throttle) == 1024
    assert throttle.retry_after_s("10.0.19.135") is not None  # the newest are kept


# ----- HTTP: access --------------------------------------------------------------------------------------


SNAPSHOT = {"v": 1, "store": "s1", "zones": [], "screens": []}


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[DashboardServer, ManualClock]]:
    manual = ManualClock()
    settings = DashboardSettings(
        enabled=True, bind="127.0.0.1", port=0, password_env="X", failures_per_minute=3
    )
    server = DashboardServer(settings, password="correct horse", snapshot=lambda: SNAPSHOT, clock=manual)
    await server.start()
    try:
        yield server, manual
    finally:
        await server.stop()


async def test_with_a_password_every_path_asks_for_basic_auth(
    guarded: tuple[DashboardServer, ManualClock],
) -> None:
    server, _ = guarded
    async with aiohttp.ClientSession() as http:
        for path in ("", "static/dashboard.js", "api/snapshot", "api/events", "nowhere"):
            async with http.get(server.url + path) as response:
                assert response.status == 401, path
                assert (
                    response.headers["WWW-Authenticate"] == 'Basic realm="store dashboard", charset="UTF-8"'
                )
                assert response.headers["Cache-Control"] == "no-store"
        async with http.get(server.url + "api/snapshot", headers=_basic("store", "correct horse")) as ok:
            assert ok.status == 200
            assert await ok.json() == SNAPSHOT
    assert server.counters["logins_failed"] == 0  # asking without credentials is not a failed login


@pytest.mark.parametrize(
    "header",
    [
        _basic("store", "wrong")["Authorization"],
        _basic("admin", "correct horse")["Authorization"],
        _basic("store", "correct horse ")["Authorization"],
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Bearer correct horse",
        "Basic",
    ],
)
async def test_a_wrong_or_malformed_login_is_refused_and_counted(
    guarded: tuple[DashboardServer, ManualClock], header: str
) -> None:
    server, _ = guarded
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "api/snapshot", headers={"Authorization": header}) as response,
    ):
        assert response.status == 401
    assert server.counters["logins_failed"] + server.counters["logins_malformed"] == 1


async def test_failed_logins_are_throttled_then_allowed_again_a_minute_later(
    guarded: tuple[DashboardServer, ManualClock],
) -> None:
    server, manual = guarded
    good = _basic("store", "correct horse")
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(server.url, headers=_basic("store", "guess")) as response:
                assert response.status == 401
        # Even the right password is not looked at while the address is held back.
        async with http.get(server.url, headers=good) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "61"
        assert server.counters["throttled"] == 1
        manual.advance(60.0)
        async with http.get(server.url, headers=good) as response:
            assert response.status == 200
            assert "<title>Store dashboard</title>" in await response.text()


async def test_without_a_password_only_this_machines_names_are_answered() -> None:
    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0)
    server = DashboardServer(settings, password=None, snapshot=lambda: SNAPSHOT, clock=ManualClock())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "[::1]", "localhost"):
                async with http.get(server.url + "api/snapshot", headers={"Host": host}) as response:
                    assert response.status == 200, host
            # A page elsewhere whose name was rebound to 127.0.0.1 (DNS rebinding) is not answered.
            for host in ("attacker.example", "attacker.example:9180", "127.0.0.1.nip.io", ""):
                async with http.get(server.url + "api/snapshot", headers={"Host": host}) as response:
                    assert response.status == 421, host
        assert server.counters["host_refused"] == 4
    finally:
        await server.stop()


async def test_only_the_page_and_its_assets_are_served_with_strict_headers() -> None:
    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0)
    server = DashboardServer(settings, password=None, snapshot=lambda: SNAPSHOT, clock=ManualClock())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for name, kind in STATIC.items():
                async with http.get(server.url + "static/" + name) as response:
                    assert response.status == 200
                    assert response.content_type == kind
                    assert response.headers["X-Frame-Options"] == "DENY"
                    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            for path in ("static/../dashboard.py", "static/..%2Fdashboard.py", "static/x.js", "api/x"):
                async with http.get(server.url + path) as response:
                    assert response.status == 404, path
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await server.stop()


async def test_a_snapshot_that_fails_is_answered_and_counted_not_raised() -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("screen-x")

    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0)
    server = DashboardServer(settings, password=None, snapshot=broken, clock=ManualClock())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "api/snapshot") as response:
            assert await response.json() == {"v": 1, "error": "snapshot_failed"}
        assert server.counters["snapshot_failed"] == 1
    finally:
        await server.stop()


async def test_open_streams_are_bounded() -> None:
    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0, max_clients=1)
    server = DashboardServer(settings, password=None, snapshot=lambda: SNAPSHOT, clock=ManualClock())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "api/events") as first:
            assert first.headers["Content-Type"] == "text/event-stream"
            assert await _next_event(first) == SNAPSHOT
            async with http.get(server.url + "api/events") as second:
                assert second.status == 503
        assert server.counters["streams_refused"] == 1
    finally:
        await server.stop()


# ----- a real gateway -------------------------------------------------------------------------------------


async def _next_event(response: aiohttp.ClientResponse, raw: bytearray | None = None) -> dict[str, Any]:
    """The next ``snapshot`` event of a server-sent event stream; every byte read is added to ``raw``."""
    event, data = "", b""
    while True:
        line = await response.content.readline()
        if raw is not None:
            raw += line
        if not line:
            raise AssertionError("the stream ended")
        line = line.rstrip(b"\r\n")
        if not line:
            if event == "snapshot":
                return json.loads(data)
            event, data = "", b""
        elif line.startswith(b"event: "):
            event = line[7:].decode()
        elif line.startswith(b"data: "):
            data += line[6:]


def _store(tmp_path: Path, port: int) -> StoreKit:
    store = make_store(tmp_path / "store", port)
    seed_path = store.workdir / "shoppers.json"
    seed = json.loads(seed_path.read_text())
    seed["shoppers"] += [
        {
            "id": shopper,
            "at": iso_utc(clock.now() - CONSENTED_BEFORE_S),
            "consents": {"personalization": True, "measurement": True},
            "profile": {"affinity": {"coffee": 0.9}, "visits": 4, "staff_display_name": shopper},
        }
        for shopper in SHOPPER_IDS
    ]
    seed_path.write_text(json.dumps(seed))
    store.config_path.write_text(
        store.config_path.read_text() + "\n[dashboard]\nenabled = true\nport = 0\nrefresh_s = 0.2\n"
    )
    return store


async def test_the_stream_follows_check_ins_and_no_shopper_id_leaves_the_gateway(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = _store(tmp_path, mosquitto.port)
    raw = bytearray()  # every byte the dashboard served in this test
    async with (
        Probe(mosquitto.port, f"{ROOT}/display/#") as probe,
        running_gateway(load_settings(store.config_path)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        dashboard = gateway.dashboard
        assert dashboard is not None
        for path in ("", *(f"static/{name}" for name in STATIC)):
            async with http.get(dashboard.url + path) as response:
                assert response.status == 200
                raw += await response.read()
        async with asyncio.timeout(STREAM_GUARD_S), http.get(dashboard.url + "api/events") as stream:
            first = await _next_event(stream, raw)
            assert [zone["id"] for zone in first["zones"]] == ["cafe", "entrance"]
            assert all(zone["people"] == 0 for zone in first["zones"])
            assert [screen["id"] for screen in first["screens"]] == ["screen-cafe", "screen-entrance"]
            assert first["screens"][0]["fallback"] is True
            assert first["screens"][0]["template"] == "loop"
            assert first["decisions"] == []
            assert first["health"]["mqtt"]["state"] == "connected"

            for shopper in SHOPPER_IDS:
                await probe.publish(f"{ROOT}/checkin", store.checkin(shopper, zone="cafe"))
            snap = first
            while not (snap["zones"][0]["people"] == 2 and len(snap["decisions"]) == 2):
                snap = await _next_event(stream, raw)
        cafe, entrance = snap["zones"]
        assert (cafe["people"], cafe["identified"], entrance["people"]) == (2, 2, 0)
        screen = snap["screens"][0]
        assert screen["fallback"] is False and screen["offer_id"] is not None
        offer = gateway.generation.decider.engine.catalog.get(screen["offer_id"])
        assert offer is not None and screen["title"] == offer.title
        assert screen["expires_at"] is not None and screen["online"] is True
        row = snap["decisions"][0]
        assert set(row) == {
            "at",
            "display",
            "zone",
            "offer_id",
            "title",
            "template",
            "model_version",
            "holdout",
            "explored",
        }
        assert (row["display"], row["zone"]) == ("screen-cafe", "cafe")
        assert row["model_version"] == snap["health"]["model_version"]
        async with http.get(dashboard.url + "api/snapshot") as response:
            document = await response.read()
        raw += document
        assert json.loads(document)["zones"][0]["people"] == 2
        # The gateway knew who they were (two identified, decided for personally), yet not one byte of the
        # page, its assets, the snapshot or the stream names them.
        for shopper in SHOPPER_IDS:
            assert shopper.encode() not in raw, shopper
        assert b"shopper_id" not in raw
        assert b"p-full" not in raw


async def test_a_gateway_without_a_dashboard_serves_none(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)
    async with running_gateway(store.settings()) as gateway:
        assert gateway.dashboard is None
        assert gateway.recent_decisions is None


async def test_a_burst_of_changes_sends_one_snapshot_built_once_for_every_stream() -> None:
    built = 0

    def counted() -> dict[str, Any]:
        nonlocal built
        built += 1
        return {"v": 1, "n": built}

    # refresh_s is the schema's maximum: only changed() can bring the next snapshot within the guard.
    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0, refresh_s=60)
    server = DashboardServer(settings, password=None, snapshot=counted, clock=ManualClock())
    await server.start()
    try:
        async with (
            asyncio.timeout(STREAM_GUARD_S),
            aiohttp.ClientSession() as http,
            http.get(server.url + "api/events") as first,
            http.get(server.url + "api/events") as second,
        ):
            # Each stream starts with a document of its own.
            assert {(await _next_event(first))["n"], (await _next_event(second))["n"]} == {1, 2}
            for _ in range(50):  # a check-in deciding for many screens, many check-ins
                server.changed()
            assert await _next_event(first) == {"v": 1, "n": 3}
            assert await _next_event(second) == {"v": 1, "n": 3}
            assert built == 3
    finally:
        await server.stop()


async def test_stopping_ends_open_streams() -> None:
    settings = DashboardSettings(enabled=True, bind="127.0.0.1", port=0, refresh_s=60)
    server = DashboardServer(settings, password=None, snapshot=lambda: SNAPSHOT, clock=ManualClock())
    await server.start()
    async with (
        asyncio.timeout(STREAM_GUARD_S),
        aiohttp.ClientSession() as http,
        http.get(server.url + "api/events") as stream,
    ):
        assert await _next_event(stream) == SNAPSHOT
        await server.stop()
        with pytest.raises((AssertionError, aiohttp.ClientPayloadError)):
            await _next_event(stream)  # the stream ended
