"""The replica: pulled pages applied atomically with their cursor, consent order, tombstones and erasure."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger
from edge.sync.wire import Change, ChangeKind, EventClass

AT = 1_800_000_000.0
KEY = bytes(range(16))
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
OFFER = {"id": "o1", "title": "Coffee", "zones": ["cafe"], "discount": 0.1}


ORDER = {"reference": "A-1042", "counter": "Desk 1", "ready_wall": AT}


def change(seq: int, kind: ChangeKind, id_: str, op: str = "upsert", at: float = AT, **data: Any) -> Change:
    return Change(seq=seq, kind=kind, id=id_, op=op, at_wall=at, data=data)  # type: ignore[arg-type]


def consent(seq: int, shopper: str, granted: bool, at: float, source: str = "app") -> Change:
    return change(
        seq,
        ChangeKind.CONSENT,
        shopper,
        at=at,
        purpose=Purpose.PERSONALIZATION,
        granted=granted,
        at_wall=at,
        source=source,
    )


def full_page() -> list[Change]:
    return [
        change(1, ChangeKind.PROFILE, "s1", profile={"segment": "regular", "affinity": {"coffee": 0.8}}),
        consent(2, "s1", True, AT),
        change(3, ChangeKind.EID_KEY, "s1", identity_key=KEY, rotation_exponent=10, clock_offset_s=-3),
        change(4, ChangeKind.TOKEN_KEY, "kid-1", public_key_pem=PEM),
        change(5, ChangeKind.OFFER, "o1", offer=OFFER),
        change(6, ChangeKind.INVENTORY, "o1", available=True, quantity=12),
        change(7, ChangeKind.INVENTORY, "o2", available=False, quantity=None),
    ]


async def _outbox_kinds(ledger: Ledger) -> list[tuple[str, str | None]]:
    return [(e.kind, e.shopper_id) for e in await ledger.outbox.peek(1000, 1 << 30)]


async def test_a_page_stores_every_kind_and_its_cursor(ledger: Ledger) -> None:
    assert await ledger.replica.cursor() is None
    result = await ledger.replica.apply_page(full_page(), "c1")
    assert result.cursor == "c1"
    assert result.applied == {
        "profile": 1,
        "consent": 1,
        "eid_key": 1,
        "token_key": 1,
        "offer": 1,
        "inventory": 2,
    }
    assert result.stale == {}
    row = ConsentRow("s1", Purpose.PERSONALIZATION, True, AT, "app")
    assert result.consents == (row,)
    assert await ledger.load_consents() == [row]
    snapshot = await ledger.replica.load()
    assert snapshot.profiles == {"s1": {"segment": "regular", "affinity": {"coffee": 0.8}}}
    assert snapshot.eid_keys == (("s1", KEY, 10, -3),)
    assert snapshot.token_keys == {"kid-1": PEM}
    assert snapshot.offers == {"o1": OFFER}
    assert snapshot.inventory == {"o1": (True, 12), "o2": (False, None)}
    assert snapshot.tombstones == {}
    assert snapshot.cursor == "c1"
    # The cloud's own changes are never echoed back to it.
    assert await _outbox_kinds(ledger) == []


async def test_deletes_remove_and_the_state_survives_a_restart(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        await ledger.replica.apply_page(full_page(), "c1")
        deletes = [
            change(8, ChangeKind.PROFILE, "s1", "delete", at=AT + 1),
            change(9, ChangeKind.EID_KEY, "s1", "delete"),
            change(10, ChangeKind.TOKEN_KEY, "kid-1", "delete"),
            change(11, ChangeKind.OFFER, "o1", "delete"),
            change(12, ChangeKind.INVENTORY, "o1", "delete"),
        ]
        await ledger.replica.apply_page(deletes, "c2")
    async with Ledger(db_path, clock) as ledger:
        snapshot = await ledger.replica.load()
    assert (snapshot.profiles, snapshot.eid_keys, snapshot.token_keys, snapshot.offers) == ({}, (), {}, {})
    assert snapshot.inventory == {"o2": (False, None)}
    assert snapshot.cursor == "c2"


async def test_reapplying_a_page_is_harmless(ledger: Ledger) -> None:
    page = [*full_page(), change(8, ChangeKind.PROFILE, "s1", "delete", at=AT + 1)]
    await ledger.replica.apply_page(page, "c1")
    first = await ledger.replica.load()
    again = await ledger.replica.apply_page(page, "c1")
    assert await ledger.replica.load() == first
    assert again.consents == ()  # the same consent again is not a change
    assert await ledger.load_consents() == [ConsentRow("s1", Purpose.PERSONALIZATION, True, AT, "app")]
    # An older profile never replaces a newer one, whatever order pages are applied in.
    await ledger.replica.apply_page([change(9, ChangeKind.PROFILE, "s2", at=AT + 5, profile={"v": 2})], "c2")
    stale = await ledger.replica.apply_page([change(3, ChangeKind.PROFILE, "s2", profile={"v": 1})], "c3")
    assert stale.stale == {"profile": 1}
    assert (await ledger.replica.load()).profiles == {"s2": {"v": 2}}


async def test_a_page_with_a_failing_change_leaves_nothing(ledger: Ledger) -> None:
    await ledger.replica.apply_page([change(1, ChangeKind.OFFER, "o0", offer={"id": "o0"})], "c1")
    bad = [
        *full_page(),
        change(8, ChangeKind.EID_KEY, "s2", identity_key=b"short", rotation_exponent=10, clock_offset_s=0),
    ]
    with pytest.raises(sqlite3.IntegrityError):
        await ledger.replica.apply_page(bad, "c2")
    snapshot = await ledger.replica.load()
    assert snapshot.offers == {"o0": {"id": "o0"}}
    assert (snapshot.profiles, snapshot.eid_keys, snapshot.token_keys, snapshot.inventory) == ({}, (), {}, {})
    assert await ledger.load_consents() == []
    assert snapshot.cursor == "c1"
    # A change that cannot even be read fails before anything is queued.
    with pytest.raises(ValueError):
        await ledger.replica.apply_page([change(9, ChangeKind.CONSENT, "s1", purpose="nope")], "c3")
    assert await ledger.replica.cursor() == "c1"


async def test_cloud_consents_follow_the_same_order_as_local_ones(ledger: Ledger) -> None:
    await ledger.set_consent(ConsentRow("s1", Purpose.PERSONALIZATION, True, AT, "app"))
    result = await ledger.replica.apply_page(
        [
            consent(1, "s1", True, AT - 10, "cloud"),  # older: loses
            consent(2, "s1", False, AT, "cloud"),  # same instant, a withdrawal: wins
            consent(3, "s1", True, AT, "zzz"),  # same instant, a grant: still loses to the withdrawal
        ],
        "c1",
    )
    assert result.applied == {"consent": 1}
    assert result.stale == {"consent": 2}
    assert result.consents == (ConsentRow("s1", Purpose.PERSONALIZATION, False, AT, "cloud"),)
    assert await ledger.load_consents() == [ConsentRow("s1", Purpose.PERSONALIZATION, False, AT, "cloud")]


async def test_an_erasure_wipes_the_shopper_everywhere_local(ledger: Ledger, make_decision) -> None:
    await ledger.replica.apply_page(full_page(), "c1")
    await ledger.replica.apply_page(
        [
            change(8, ChangeKind.PROFILE, "s2", profile={"segment": "new"}),
            change(9, ChangeKind.EID_KEY, "s2", identity_key=KEY, rotation_exponent=9, clock_offset_s=0),
        ],
        "c2",
    )
    await ledger.record_decision(make_decision("d1", shopper_id="s1"), keep_shopper=True)
    await ledger.record_decision(make_decision("d2", shopper_id="s2"), keep_shopper=True)
    for decision_id in ("d1", "d2"):
        await ledger.record_exposure(
            decision_id=decision_id, display_id="screen-1", version=1, shown_at_wall=AT, acked_at_wall=AT
        )
    await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT, "app"))
    await ledger.outbox.enqueue("purchase", EventClass.CONVERSION, {"order": "o1"}, shopper_id="s1")
    await ledger.set_consent(ConsentRow("s2", Purpose.MEASUREMENT, True, AT, "app"))

    result = await ledger.replica.apply_page([change(10, ChangeKind.ERASURE, "s1", at=AT + 100)], "c3")

    assert result.erased == (("s1", AT + 100),)
    assert result.outbox_anonymised == 3  # s1's decision, exposure and purchase
    snapshot = await ledger.replica.load()
    assert set(snapshot.profiles) == {"s2"}
    assert [row[0] for row in snapshot.eid_keys] == ["s2"]
    # The tombstone keeps a keyed hash of the id, never the id (asked by id, from memory).
    assert list(snapshot.tombstones.values()) == [AT + 100] and "s1" not in snapshot.tombstones
    assert ledger.replica.tombstone("s1") == AT + 100
    assert [c.shopper_id for c in await ledger.load_consents()] == ["s2"]
    d1, d2 = await ledger.decision("d1"), await ledger.decision("d2")
    assert d1 is not None and d1["shopper_id"] is None
    assert d2 is not None and d2["shopper_id"] == "s2"
    assert sorted(str(e["shopper_id"]) for e in await ledger.exposures()) == ["None", "s2"]
    assert await ledger.offer_counts_since(0.0) == [("s2", "offer-a", 1)]
    # Nothing is lost, in its place in the queue: s1's telemetry and purchase stay, anonymous; s1's consent
    # change (privacy) keeps its id. No erasure event: the cloud sent it.
    assert await _outbox_kinds(ledger) == [
        ("decision", None),
        ("decision", "s2"),
        ("exposure", None),
        ("exposure", "s2"),
        ("consent", "s1"),
        ("purchase", None),
        ("consent", "s2"),
    ]
    bodies = [json.loads(entry.body) for entry in await ledger.outbox.peek(100, 1 << 20)]
    assert [body["shopper_id"] for body in bodies] == [None, "s2", None, "s2", "s1", None, "s2"]
    assert "s1" not in json.dumps([b for b in bodies if b["kind"] != "consent"])
    assert ledger.replica.tombstone("s1") == AT + 100
    assert ledger.replica.tombstone("s2") is None


async def test_nothing_older_than_a_tombstone_comes_back(db_path: Path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        await ledger.replica.apply_page([change(1, ChangeKind.ERASURE, "s1", at=AT)], "c1")
        # A later erasure time wins; an earlier one does not move it back.
        await ledger.replica.apply_page([change(2, ChangeKind.ERASURE, "s1", at=AT + 10)], "c2")
        await ledger.replica.apply_page([change(3, ChangeKind.ERASURE, "s1", at=AT + 5)], "c3")
        assert ledger.replica.tombstone("s1") == AT + 10
        late = await ledger.replica.apply_page(
            [
                consent(4, "s1", True, AT + 10),
                change(5, ChangeKind.PROFILE, "s1", at=AT + 9, profile={"v": 1}),
                change(
                    6,
                    ChangeKind.EID_KEY,
                    "s1",
                    at=AT + 10,
                    identity_key=KEY,
                    rotation_exponent=1,
                    clock_offset_s=0,
                ),
            ],
            "c4",
        )
        assert late.stale == {"consent": 1, "profile": 1, "eid_key": 1}
        assert late.consents == ()
        # Locally too, at or before the erasure: refused and counted.
        await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT + 10, "app"))
        assert ledger.stats().consent_stale == 1
        assert await ledger.load_consents() == []
        assert [e.kind for e in await ledger.outbox.peek(10, 1 << 20)] == []
    async with Ledger(db_path, clock) as ledger:
        # The in-memory tombstones are loaded at open.
        assert ledger.replica.tombstone("s1") == AT + 10
        # After the erasure, the shopper may come back (a new relationship).
        fresh = await ledger.replica.apply_page(
            [
                consent(7, "s1", True, AT + 11),
                change(8, ChangeKind.PROFILE, "s1", at=AT + 11, profile={"v": 2}),
            ],
            "c5",
        )
        assert fresh.applied == {"consent": 1, "profile": 1}
        await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, AT + 12, "app"))
        assert [c.purpose for c in await ledger.load_consents()] == [
            Purpose.MEASUREMENT,
            Purpose.PERSONALIZATION,
        ]


async def test_a_local_forget_leaves_a_tombstone_and_wipes_the_replica(
    ledger: Ledger, clock: ManualClock
) -> None:
    await ledger.replica.apply_page(full_page(), "c1")
    await ledger.forget_shopper("s1")
    assert ledger.replica.tombstone("s1") == clock.wall()
    snapshot = await ledger.replica.load()
    assert (snapshot.profiles, snapshot.eid_keys, list(snapshot.tombstones.values())) == (
        {},
        (),
        [clock.wall()],
    )
    assert ledger.replica.tombstone("s1") == clock.wall()
    assert await ledger.load_consents() == []
    # A cloud grant from before the forget, pulled after it, does not bring the consent back.
    late = await ledger.replica.apply_page([consent(8, "s1", True, clock.wall() - 1)], "c2")
    assert late.stale == {"consent": 1}
    assert await _outbox_kinds(ledger) == [("erasure", "s1")]


async def test_orders_are_kept_until_the_cloud_deletes_them_and_collected_once(
    ledger: Ledger, db_path: Path
) -> None:
    page = [change(seq, ChangeKind.ORDER, f"ord-{seq}", **ORDER, shopper_id="s1") for seq in (1, 2)]
    assert (await ledger.replica.apply_page(page, "c2")).applied == {"order": 2}
    assert [row[0] for row in (await ledger.replica.load()).orders] == ["ord-1", "ord-2"]
    # Collected here: durable with one conversion event each (no shopper id); a second collection is a no-op.
    assert await ledger.collect_orders(["ord-1", "ord-1", "ord-x"], "staff") == ["ord-1"]
    assert await ledger.collect_orders(["ord-1"], "pos") == []
    events = [e for e in await ledger.outbox.peek(100, 1 << 20) if e.kind == "order_collected"]
    assert [(json.loads(e.body)["data"], e.shopper_id, e.cls) for e in events] == [
        ({"order_id": "ord-1", "via": "staff"}, None, EventClass.CONVERSION)
    ]
    # The snapshot a restart loads holds only the open order; an update from the cloud never reopens one.
    await ledger.replica.apply_page([change(3, ChangeKind.ORDER, "ord-1", **ORDER, shopper_id="s1")], "c3")
    assert [row[0] for row in (await ledger.replica.load()).orders] == ["ord-2"]
    await ledger.replica.apply_page([change(4, ChangeKind.ORDER, "ord-1", op="delete")], "c4")
    assert [row[0] for row in (await ledger.replica.load()).orders] == ["ord-2"]
    # An erasure takes the shopper's orders, and an order older than the erasure never comes back.
    await ledger.forget_shopper("s1", report=False)
    await ledger.replica.apply_page([change(5, ChangeKind.ORDER, "ord-2", **ORDER, shopper_id="s1")], "c5")
    assert (await ledger.replica.load()).orders == ()


async def test_a_consent_delete_forgets_the_row_unless_newer_seeded_or_still_queued(ledger: Ledger) -> None:
    """The cloud no longer sends this store the shopper (membership lapsed): their consent rows go, but never a
    newer choice, the operator's seed, or the store's own change the cloud has not heard of yet; and nothing is
    pushed (it is not the shopper's choice)."""
    await ledger.replica.apply_page(
        [
            consent(1, "p-old", True, AT - 100, source="cloud"),
            consent(2, "p-newer", True, AT + 100, source="cloud"),
            consent(3, "p-seed", True, AT - 100, source="seed"),
        ],
        "c3",
    )
    # p-queued withdrew at this store's kiosk: the event waits in the outbox
    await ledger.set_consent(ConsentRow("p-queued", Purpose.PERSONALIZATION, False, AT - 50, "kiosk"))
    queued_before = (await ledger.outbox.stats()).events
    drop = [
        change(10 + i, ChangeKind.CONSENT, shopper, "delete", purpose=Purpose.PERSONALIZATION)
        for i, shopper in enumerate(("p-old", "p-newer", "p-seed", "p-queued", "p-unknown"))
    ]
    result = await ledger.replica.apply_page(drop, "c15")
    assert result.dropped == (("p-old", Purpose.PERSONALIZATION),)
    held = {row.shopper_id for row in await ledger.load_consents()}
    assert held == {"p-newer", "p-seed", "p-queued"}
    assert (await ledger.outbox.stats()).events == queued_before
