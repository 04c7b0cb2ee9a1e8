"""Logs never carry personal data (issue 15, section 5), even at DEBUG.

A whole gateway at DEBUG, through the real root handler (``setup_logging``), against the reference cloud and
a real mosquitto: a check-in, an ESPresense report of a phone, a cloud that fails pushes, a withdrawal and an
erasure. No log record may hold a shopper id, a profile value (legal name, e-mail, display name), a token or
the phone's device id. And the pieces: libraries below INFO never pass, tracebacks keep frames and types
but withhold messages that may carry input, a shopper appears in our own lines only as ``shopper_ref``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.control.logs import (
    LIBRARIES,
    WITHHELD,
    format_exception_safely,
    make_handler,
    set_level,
    setup_logging,
    shopper_ref,
)
from edge.events import Purpose
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, synced_store
from tests.support.wait import until

SHOPPER = "p-secret-7f3a9c01"
PROFILE = {
    "name": "Maria Geheim",
    "email": "maria.geheim@example.org",
    "staff_display_name": "Mariquita",
    "visits": 3,
}
PHONE = "c0ffee9b1e42"
EID_KEY = bytes(range(100, 116))


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's logging as the daemon sets it up, at DEBUG, into a buffer; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in LIBRARIES}
    buffer = io.StringIO()
    setup_logging("DEBUG", json_format=False, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in libraries.items():
            logging.getLogger(name).setLevel(old)


async def test_a_gateway_at_debug_logs_nothing_personal(
    tmp_path: Path, mosquitto: Mosquitto, captured: io.StringIO
) -> None:
    set_level("DEBUG")  # here: pytest's own logging sets the root level once the fixtures are done
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        purposes = ("personalization", "measurement", "presence_ble", "clienteling")
        await cloud.add_shopper(SHOPPER, PROFILE, purposes, EID_KEY)
        # The store's own file may ask for DEBUG (a push may not).
        extra = (
            '\n[ble.espresense]\nenabled = true\nrooms = { kitchen = "cafe" }\n\n[logging]\nlevel = "DEBUG"\n'
        )
        store = synced_store(tmp_path, mosquitto.port, cloud.base_url, token, extra)
        async with (
            running_gateway(store.settings()) as gateway,
            Probe(mosquitto.port, f"{ROOT}/#") as probe,
        ):
            generation = gateway.generation
            assert generation is not None and generation.sync is not None
            await until(lambda: generation.consents.has(SHOPPER, Purpose.PERSONALIZATION))
            checkin = store.checkin(SHOPPER, zone="cafe")
            await probe.publish(f"{ROOT}/checkin", checkin)
            await probe.publish(f"{ROOT}/checkin", checkin)  # a replay: refused, and logged
            await probe.publish(
                f"espresense/devices/{PHONE}/kitchen", {"id": PHONE, "rssi": -60, "distance": 1}
            )
            await probe.publish(f"espresense/devices/{PHONE}/attic", {"id": PHONE, "rssi": "loud"})
            await until(lambda: generation.stats.checkins == 1)
            # The cloud fails every push for a while, then comes back; then the shopper withdraws and is erased.
            cloud.faults.set("http500", prefix=f"/v1/stores/{STORE}/events")
            await probe.publish(f"{ROOT}/checkin", store.checkin(SHOPPER, zone="entrance"))  # events to push
            await until(lambda: cloud.faults.hits >= 2)
            cloud.faults.reset()
            await cloud.put_consent(
                SHOPPER, "presence_ble", False, source="app"
            )  # logged at DEBUG, by reference
            await probe.publish(f"{ROOT}/checkin", {"v": 1, "token": "not-a-token", "zone": "cafe"})
            await until(lambda: not generation.consents.has(SHOPPER, Purpose.PRESENCE_BLE))
            await cloud.put_consent(SHOPPER, "personalization", False, source="app")
            await cloud.erase(SHOPPER)
            await until(
                lambda: not generation.consents.granted(SHOPPER) and SHOPPER not in generation.profiles
            )
    text = captured.getvalue()
    # The gateway's own DEBUG lines are there, naming the shopper by reference only.
    assert f"DEBUG edge.identity.eid: presence_ble withdrawn: EIDs of {shopper_ref(SHOPPER)} removed" in text
    assert "DEBUG edge.identity.tokens: token rejected" in text
    assert "DEBUG aiosqlite" not in text and "DEBUG paho" not in text
    token_body = json.loads(checkin)["token"]
    for secret in (
        SHOPPER,
        *PROFILE.values(),
        token_body,
        PHONE,
        base64.b64encode(EID_KEY).decode(),
        EID_KEY.hex(),
    ):
        if isinstance(secret, str):
            assert secret not in text, f"{secret!r} in the log"


def test_libraries_stay_at_info_whatever_the_level() -> None:
    buffer = io.StringIO()
    handler = make_handler(json_format=False, stream=buffer)
    record = logging.LogRecord("aiosqlite", logging.DEBUG, __file__, 1, "execute %s", ("p-1",), None)
    assert not handler.filter(record)
    own = logging.LogRecord("edge.flow.checkin", logging.DEBUG, __file__, 1, "ours", None, None)
    assert handler.filter(own)
    warning = logging.LogRecord("aiosqlite", logging.WARNING, __file__, 1, "slow", None, None)
    assert handler.filter(warning)
    level = logging.getLogger().level
    libraries = {name: logging.getLogger(name).level for name in LIBRARIES}
    try:
        set_level("DEBUG")
        assert logging.getLogger("aiosqlite").level == logging.INFO
        set_level("ERROR")
        assert logging.getLogger("aiosqlite").level == logging.ERROR
    finally:
        logging.getLogger().setLevel(level)
        for name, old in libraries.items():  # no level leaks into the next test
            logging.getLogger(name).setLevel(old)


def _parse(payload: str) -> None:
    raise ValueError(f"bad shopper {payload}")


def _handle(payload: str, contact: str) -> None:
    try:
        _parse(payload)
    except ValueError as error:
        raise KeyError(contact) from error


def _disk_full() -> None:
    raise OSError(28, "No space left on device")


def test_a_traceback_keeps_its_frames_and_withholds_input() -> None:
    # The values come in as data (the source lines a traceback shows hold only names).
    shopper, contact = "p-secret-1", "maria@example.org"
    with pytest.raises(KeyError) as outer:
        _handle(shopper, contact)
    text = format_exception_safely(outer.value)
    assert shopper not in text and contact not in text
    assert "in _parse" in text and "ValueError: " + WITHHELD in text and "KeyError: " + WITHHELD in text
    assert "direct cause" in text
    with pytest.raises(OSError, match="No space") as disk:
        _disk_full()
    assert "No space left on device" in format_exception_safely(disk.value)  # about the system: kept


def test_a_logged_exception_goes_through_the_safe_formatter() -> None:
    buffer, secret, seen = io.StringIO(), "p-secret-2", {}
    logger = logging.getLogger("edge.test_log_privacy")
    handler = make_handler(json_format=True, stream=buffer)
    logger.addHandler(handler)
    try:
        try:
            seen[secret]
        except KeyError:
            logger.exception("handler failed")
    finally:
        logger.removeHandler(handler)
    assert secret not in buffer.getvalue() and WITHHELD in buffer.getvalue()


def test_a_shopper_reference_is_stable_within_a_run_and_says_nothing() -> None:
    assert shopper_ref("p-1") == shopper_ref("p-1") != shopper_ref("p-2")
    assert "p-1" not in shopper_ref("p-1") and shopper_ref("p-1").startswith("shopper#")
