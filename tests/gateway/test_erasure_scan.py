"""Erasure that leaves nothing (issue 15, section 4), proven on the bytes.

A shopper with a profile (legal name, e-mail, a display name for staff), every consent and an Eddystone-EID
key is pulled from the reference cloud, checks in (decisions and events with their id under
``measurement``), gets a staff notice, and is then erased in the cloud. After the gateway applied it through
the real sync path and stopped: every byte of the store's directory (ledger, WAL, SHM, state, snapshots, the
model store) and every message the gateway published after the erasure hold none of the id, the EID key (raw,
base64 or hex), the display name, the name or the e-mail. Their token, still valid, is refused as ``erased``.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.events import Purpose
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, synced_store
from tests.support.wait import until

SHOPPER = "p-erase-4b1d77"
PROFILE = {
    "name": "Ingrid Vergessen",
    "email": "ingrid.vergessen@example.org",
    "staff_display_name": "Inga",
    "affinity": {"coffee": 0.9},
    "visits": 7,
}
EID_KEY = bytes(range(200, 216))


def _needles() -> dict[str, bytes]:
    return {
        "shopper id": SHOPPER.encode(),
        "EID key": EID_KEY,
        "EID key (base64)": base64.b64encode(EID_KEY),
        "EID key (hex)": EID_KEY.hex().encode(),
        "display name": b"Inga",
        "name": PROFILE["name"].encode(),
        "e-mail": PROFILE["email"].encode(),
    }


def _files(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _found(root: Path) -> list[tuple[str, str]]:
    """(file, what) for every needle in every file under ``root``."""
    return [
        (str(path.relative_to(root)), what)
        for path, data in _files(root).items()
        for what, needle in _needles().items()
        if needle in data
    ]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that really persists: run as this user (mosquitto started as root would otherwise become the
    'mosquitto' user, which cannot write under pytest's private tmp_path, and persist nothing)."""
    broker = Mosquitto(tmp_path / "broker", run_as=getpass.getuser())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_after_an_erasure_no_byte_of_the_store_holds_the_shopper(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        purposes = ("personalization", "measurement", "presence_ble", "clienteling", "device_preferences")
        await cloud.add_shopper(SHOPPER, PROFILE, purposes, EID_KEY)
        extra = '\n[ble.espresense]\nenabled = true\n\n[staff]\nteams = { floor = ["cafe"] }\n'
        store = synced_store(tmp_path, mosquitto.port, cloud.base_url, token, extra)
        workdir = store.workdir
        async with (
            Probe(mosquitto.port, f"{ROOT}/#") as probe,
            running_gateway(store.settings()) as gateway,
        ):
            generation, ledger = gateway.generation, gateway.ledger
            assert generation is not None and generation.sync is not None and ledger is not None
            await until(lambda: generation.consents.has(SHOPPER, Purpose.MEASUREMENT))
            await probe.publish(f"{ROOT}/checkin", store.checkin(SHOPPER, zone="cafe"))
            await until(lambda: any(b"Inga" in payload for _, payload, _ in probe.messages))  # the notice
            # A sale with their token: kept for measurement with their id (ledger.conversions)
            sale = {
                "v": 1,
                "txn_id": "T-erase",
                "token": store.token(SHOPPER),
                "items": [{"sku": "FLAT-WHITE", "qty": 1, "price": 3.5, "category": "coffee"}],
            }
            await probe.publish(f"{ROOT}/pos/1/transaction", json.dumps(sale).encode())
            assert generation.pos is not None
            await until(lambda: generation.pos is not None and generation.pos.counters.identified == 1)

            async def pushed() -> bool:
                return (await ledger.outbox.stats()).events == 0 and bool(await cloud.events(STORE))

            await until(pushed)
            # A token minted before the erasure, still valid after it.
            late = store.checkin(SHOPPER, zone="cafe")
            await cloud.erase(SHOPPER)
            await until(lambda: ledger.replica.tombstone(SHOPPER) is not None)
            since = len(probe.messages)
            await probe.publish(f"{ROOT}/checkin", late)
            await until(
                lambda: generation.rejects.as_dict().get("checkin.erased") == 1,
                detail=lambda: (
                    generation.rejects.as_dict(),
                    generation.stats.checkins,
                    generation.consents.granted(SHOPPER),
                    ledger.replica.tombstone(SHOPPER),
                ),
            )
            await until(lambda: SHOPPER not in generation.profiles and ledger.replica.scrubs >= 1)
            published_after = probe.messages[since:]
            # While it runs (a card pulled from a live gateway): the file, its WAL and SHM.
            assert _found(workdir) == []
        # Through the ledger's own eyes first: nothing under the id in any table.
        with contextlib.closing(sqlite3.connect(workdir / "ledger.sqlite")) as conn:
            for table, column in (
                ("decisions", "shopper_id"),
                ("consents", "shopper_id"),
                ("outbox", "shopper_id"),
                ("conversions", "shopper_id"),
            ):
                count = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE {column} = ?", (SHOPPER,)
                ).fetchone()
                assert count == (0,), table
    # And after it stopped: every file of the store's directory.
    assert any(path.name == "ledger.sqlite" for path in _files(workdir))
    assert _found(workdir) == []
    said = [
        (topic, what)
        for topic, payload, _ in published_after
        for what, needle in _needles().items()
        if needle in payload
    ]
    assert said == []
    # The broker's persistence (retained messages, sessions; written on a clean stop) and its log.
    mosquitto.stop()
    assert (mosquitto.workdir / "mosquitto.db").is_file()
    assert _found(mosquitto.workdir) == []
