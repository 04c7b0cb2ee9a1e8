"""A rebuild after a cursor reset sweeps what the cloud's full state lacks; revocations are durable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger
from edge.sync.wire import ChangeKind
from tests.ledger.test_replica import AT, KEY, OFFER, ORDER, PEM, change, consent, full_page


def _rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return sorted(db.execute(sql).fetchall())


async def test_a_rebuild_keeps_what_the_new_cloud_has_and_sweeps_the_rest(
    ledger: Ledger, db_path: Path
) -> None:
    await ledger.replica.apply_page(
        [
            *full_page(),
            change(8, ChangeKind.PROFILE, "s2", profile={"v": 1}),
            consent(9, "s2", True, AT),
            change(10, ChangeKind.OFFER, "o2", offer={**OFFER, "id": "o2"}),
            *(
                change(seq, ChangeKind.ORDER, order, **ORDER, shopper_id="s2")
                for seq, order in ((11, "ord-kept"), (12, "ord-gone"))
            ),
        ],
        "old.10",
        complete=True,
    )
    # Consents of the store itself: one still queued for the cloud, one from the seed file, one delivered.
    await ledger.set_consent(ConsentRow("s3", Purpose.MEASUREMENT, False, AT + 1, "kiosk"))
    await ledger.set_consent(ConsentRow("s4", Purpose.MEASUREMENT, True, AT, "seed"))
    await ledger.set_consent(ConsentRow("s5", Purpose.MEASUREMENT, True, AT, "app"))
    await ledger.outbox.ack([e.seq for e in await ledger.outbox.peek(10, 1 << 20) if e.shopper_id == "s5"])

    await ledger.replica.begin_rebuild()
    assert await ledger.replica.cursor() is None and await ledger.replica.rebuilding()
    # The new cloud: s2 and o2 only, in two pages; nothing is removed before the last one.
    first = await ledger.replica.apply_page(
        [change(1, ChangeKind.PROFILE, "s2", profile={"v": 2})], "new.1", complete=False
    )
    assert first.swept is None
    assert ("s1",) in _rows(db_path, "SELECT shopper_id FROM profiles")
    last = await ledger.replica.apply_page(
        [
            consent(2, "s2", False, AT + 5),
            change(3, ChangeKind.OFFER, "o2", offer={**OFFER, "id": "o2"}),
            change(4, ChangeKind.ORDER, "ord-kept", **ORDER, shopper_id="s2"),
        ],
        "new.4",
        complete=True,
    )
    assert last.swept is not None
    assert last.swept.counts() == {
        "profiles": 1,
        "eid_keys": 1,
        "token_keys": 1,
        "offers": 1,
        "inventory": 2,
        "consents": 2,
        "orders": 1,
        "campaign_exposures": 0,
    }
    assert last.swept.orders == ("ord-gone",)
    assert _rows(db_path, "SELECT order_id FROM pickup_orders") == [("ord-kept",)]
    assert last.swept.consents == (("s1", Purpose.PERSONALIZATION), ("s5", Purpose.MEASUREMENT))
    assert _rows(db_path, "SELECT shopper_id, profile FROM profiles") == [("s2", '{"v":2}')]
    assert _rows(db_path, "SELECT * FROM eid_keys") == []
    assert _rows(db_path, "SELECT * FROM token_keys") == []
    assert _rows(db_path, "SELECT offer_id FROM offers") == [("o2",)]
    assert _rows(db_path, "SELECT * FROM inventory") == []
    assert _rows(db_path, "SELECT shopper_id, purpose, granted FROM consents") == [
        ("s2", "personalization", 0),
        ("s3", "measurement", 0),  # queued for the cloud: it will come back from there
        ("s4", "measurement", 1),  # the seed file's, applied again at every start
    ]
    assert not await ledger.replica.rebuilding()
    assert await ledger.replica.cursor() == "new.4"
    # The local events are all still queued (s3's consent among them).
    assert [e.shopper_id for e in await ledger.outbox.peek(10, 1 << 20) if e.kind == "consent"] == ["s3"]
    # A normal page afterwards sweeps nothing.
    after = await ledger.replica.apply_page([], "new.3", complete=True)
    assert after.swept is None


async def test_a_rebuild_survives_a_restart_midway(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        await ledger.replica.apply_page(full_page(), "old.7", complete=True)
        await ledger.replica.begin_rebuild()
        await ledger.replica.apply_page(
            [change(1, ChangeKind.EID_KEY, "s1", identity_key=KEY, rotation_exponent=10, clock_offset_s=0)],
            "new.1",
        )
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.replica.rebuilding() and await ledger.replica.cursor() == "new.1"
        last = await ledger.replica.apply_page([], "new.1", complete=True)
        assert last.swept is not None and last.swept.eid_keys == ()
        assert last.swept.profiles == ("s1",)
        snapshot = await ledger.replica.load()
        assert [row[0] for row in snapshot.eid_keys] == ["s1"] and snapshot.profiles == {}


async def test_a_revocation_is_durable_and_only_the_clouds_trust_lifts_it(
    db_path: Path, clock: ManualClock
) -> None:
    async with Ledger(db_path, clock) as ledger:
        await ledger.replica.apply_page([change(1, ChangeKind.TOKEN_KEY, "kid-1", public_key_pem=PEM)], "c.1")
        # Revoked: also a kid the replica never held (a key of the store's files).
        await ledger.replica.apply_page(
            [
                change(2, ChangeKind.TOKEN_KEY, "kid-1", op="delete"),
                change(3, ChangeKind.TOKEN_KEY, "file-kid", op="delete"),
            ],
            "c.3",
        )
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.replica.revoked_keys() == {"kid-1", "file-kid"}
        snapshot = await ledger.replica.load()
        assert snapshot.token_keys == {} and snapshot.revoked_keys == {"kid-1", "file-kid"}
        # A rebuild does not lift a revocation (refusing is the safe side) ...
        await ledger.replica.begin_rebuild()
        await ledger.replica.apply_page([], "new.0", complete=True)
        assert await ledger.replica.revoked_keys() == {"kid-1", "file-kid"}
        # ... the cloud trusting the kid again does.
        await ledger.replica.apply_page(
            [change(4, ChangeKind.TOKEN_KEY, "kid-1", public_key_pem=PEM)], "new.4"
        )
        assert await ledger.replica.revoked_keys() == {"file-kid"}
