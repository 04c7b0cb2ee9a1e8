"""The store and admin APIs over real HTTP: happy paths, auth, cursors, consents, erasure, pushes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.clock import ManualClock
from tests.profilestore.spec import check
from tests.support.profilestore import ProfileStoreKit, running_profile_store

OFFER = {"id": "latte-2for1", "title": "Two lattes", "category": "coffee", "value": 4.5, "zones": ["cafe"]}
EID_KEY = bytes(range(16))


def public_pem() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def new_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": str(uuid.uuid4()),
        "kind": "exposure",
        "class": "conversion",
        "at": "2026-11-01T10:00:00Z",
        "shopper_id": "p1",
        "data": {"display": "screen-1"},
    }
    event.update(overrides)
    return event


async def pull_all(
    kit: ProfileStoreKit, token: str, since: str = "", limit: int = 1000
) -> tuple[list[Any], str]:
    changes: list[Any] = []
    while True:
        status, page = await kit.store_call(
            "GET", f"/v1/stores/s1/changes?since={since}&limit={limit}", token
        )
        assert status == 200, page
        check("ChangePage", page)
        changes += page["changes"]
        since = page["cursor"]
        if not page["more"]:
            return changes, since


async def test_every_endpoint_answers_as_the_spec_says(kit: ProfileStoreKit, token: str) -> None:
    # s1 is p1's home store (the kit's first store); "extra" is the cloud's own: never served to a store.
    written = check(
        "ShopperResult", await kit.put_shopper("p1", {"affinity": {"coffee": 0.9}, "visits": 3, "extra": [1]})
    )
    assert (written["stores"], written["home_store"]) == (1, "s1")
    check(
        "ConsentResult",
        await kit.put_consent("p1", "presence_ble", True, "2026-11-01T10:00:00+01:00", "app"),
    )
    check("ShopperWriteResult", await kit.put_eid_key("p1", EID_KEY, 10, clock_offset_s=-5))
    pem = public_pem()
    check("SeqResult", await kit.put_token_key("k1", pem))
    check("SeqResult", await kit.put_offer(OFFER))
    check("SeqResult", await kit.put_inventory("latte-2for1", True, 12))
    check("SeqResult", await kit.put_inventory("latte-2for1", False))

    changes, cursor = await pull_all(kit, token)
    by_kind = {change["kind"]: change for change in changes}
    assert by_kind["profile"]["data"] == {"profile": {"affinity": {"coffee": 0.9}, "visits": 3}}
    assert by_kind["consent"]["data"] == {
        "purpose": "presence_ble",
        "granted": True,
        "at": "2026-11-01T09:00:00.000Z",
        "source": "app",
    }
    assert by_kind["eid_key"]["data"] == {
        "identity_key": "AAECAwQFBgcICQoLDA0ODw==",
        "rotation_exponent": 10,
        "clock_offset_s": -5,
    }
    assert by_kind["token_key"]["data"] == {"public_key_pem": pem}
    assert by_kind["offer"]["data"]["id"] == "latte-2for1"
    assert by_kind["offer"]["data"]["daily_cap_per_shopper"] == 3  # normalised: defaults filled in
    assert by_kind["inventory"]["data"] == {"available": False, "quantity": None}
    assert len(changes) == 6  # the first inventory change was replaced by the second

    status, profile = await kit.store_call("GET", "/v1/stores/s1/profiles/p1", token)
    assert status == 200
    assert check("ShopperProfile", profile) == {
        "shopper_id": "p1",
        "profile": {"affinity": {"coffee": 0.9}, "visits": 3},
        "consents": {"presence_ble": {"granted": True, "at": "2026-11-01T09:00:00.000Z", "source": "app"}},
        "eid_key": {
            "identity_key": "AAECAwQFBgcICQoLDA0ODw==",
            "rotation_exponent": 10,
            "clock_offset_s": -5,
        },
    }

    events = [new_event(), new_event(shopper_id=None, **{"class": "telemetry"})]
    status, result = await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": events})
    assert status == 200
    assert check("PushResult", result) == {"accepted": 2, "duplicates": 0, "rejected": []}
    stored = await kit.events("s1")
    check("EventPage", {"events": stored, "cursor": "0123456789abcdef.0", "more": False})
    assert [event["id"] for event in stored] == [event["id"] for event in events]
    assert stored[0]["at"] == "2026-11-01T10:00:00.000Z"
    assert stored[1]["shopper_id"] is None

    deleted_key = check("ShopperDeleteResult", await kit.delete_eid_key("p1"))
    assert (deleted_key["stores"], deleted_key["existed"]) == (1, True)
    for deleted in (
        await kit.delete_token_key("k1"),
        await kit.delete_offer("latte-2for1"),
        await kit.delete_inventory("latte-2for1"),
    ):
        assert check("DeleteResult", deleted)["existed"]
    more, _ = await pull_all(kit, token, cursor)
    assert [(change["kind"], change["op"], change["data"]) for change in more] == [
        ("eid_key", "delete", {}),
        ("token_key", "delete", {}),
        ("offer", "delete", {}),
        ("inventory", "delete", {}),
    ]
    stats = check("Stats", await kit.stats())
    assert stats["events_by_store"] == {"s1": 2}
    assert (stats["stores"], stats["profiles"], stats["consents"], stats["offers"]) == (1, 1, 1, 0)
    health = await kit.admin("GET", "/healthz")
    assert health == {"status": "ok"}


async def test_tokens_are_checked_per_store(kit: ProfileStoreKit, token: str) -> None:
    other = await kit.add_store("s2")
    path = "/v1/stores/s1/changes"
    assert (await kit.store_call("GET", path, token))[0] == 200
    status, body = await kit.store_call("GET", path, other)
    assert (status, body["error"]) == (403, "forbidden")
    for wrong in ("not-a-token", kit.admin_token):
        status, body = await kit.store_call("GET", path, wrong)
        assert (status, body["error"]) == (401, "unauthorized")
    session = kit._client()
    async with session.get(kit.base_url + path) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with session.get(kit.base_url + path, headers={"Authorization": f"Basic {token}"}) as response:
        assert response.status == 401
    # A store token is not an admin token, and an unregistered store's path is refused the same way.
    async with session.get(
        kit.base_url + "/admin/v1/stats", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 401
    assert (await kit.store_call("GET", "/v1/stores/nobody/changes", token))[0] == 403
    # Rotating a token retires the old one.
    await kit.admin("PUT", "/admin/v1/stores/s1", {"token": "a-new-token-for-store-one"})
    assert (await kit.store_call("GET", path, token))[0] == 401
    assert (await kit.store_call("GET", path, "a-new-token-for-store-one"))[0] == 200
    conflict = await kit.admin(
        "PUT", "/admin/v1/stores/s3", {"token": "a-new-token-for-store-one"}, expect=409
    )
    assert conflict["error"] == "conflict"


async def test_pages_follow_the_cursor_without_gaps_or_repeats(kit: ProfileStoreKit, token: str) -> None:
    for number in range(25):
        await kit.put_offer({**OFFER, "id": f"offer-{number}"})
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        status, page = await kit.store_call("GET", f"/v1/stores/s1/changes?since={cursor}&limit=10", token)
        assert status == 200
        seen += [change["seq"] for change in page["changes"]]
        assert page["cursor"] != cursor
        cursor = page["cursor"]
        pages += 1
        if not page["more"]:
            break
    assert pages == 3
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 25
    # At the end: an empty page that keeps the cursor; a new change shows up after it.
    status, page = await kit.store_call("GET", f"/v1/stores/s1/changes?since={cursor}", token)
    assert (page["changes"], page["cursor"], page["more"]) == ([], cursor, False)
    await kit.put_inventory("offer-3", True, 1)
    status, page = await kit.store_call("GET", f"/v1/stores/s1/changes?since={cursor}", token)
    assert [change["seq"] for change in page["changes"]] == [26]


@pytest.mark.parametrize(
    ("since", "status", "error"),
    [
        ("42", 400, "bad_cursor"),
        ("zz", 400, "bad_cursor"),
        ("0123456789abcdef.99999999999999999999", 400, "bad_cursor"),
        ("0123456789abcdef.0", 410, "cursor_reset"),  # another database's cursor
    ],
)
async def test_bad_cursors_are_refused(
    kit: ProfileStoreKit, token: str, since: str, status: int, error: str
) -> None:
    answer = await kit.store_call("GET", f"/v1/stores/s1/changes?since={since}", token)
    assert (answer[0], answer[1]["error"]) == (status, error)


async def test_a_cursor_ahead_of_the_database_is_reset(kit: ProfileStoreKit, token: str) -> None:
    _, page = await kit.store_call("GET", "/v1/stores/s1/changes", token)
    instance = page["cursor"].split(".")[0]
    status, body = await kit.store_call("GET", f"/v1/stores/s1/changes?since={instance}.5", token)
    assert (status, body["error"]) == (410, "cursor_reset")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1&limit=2"])
async def test_bad_limits_are_refused(kit: ProfileStoreKit, token: str, query: str) -> None:
    status, body = await kit.store_call("GET", f"/v1/stores/s1/changes?{query}", token)
    assert (status, body["error"]) == (400, "bad_request")


async def test_consents_latest_wins_and_withdrawal_wins_a_tie(tmp_path: Path) -> None:
    clock = ManualClock(wall=1_800_000_000.0)
    async with running_profile_store(tmp_path, clock=clock) as kit:
        token = await kit.add_store("s1")
        first = await kit.put_consent("p1", "measurement", True, "2026-11-01T10:00:00Z", "app")
        assert first["applied"]
        older = await kit.put_consent("p1", "measurement", False, "2026-11-01T09:00:00Z", "app")
        assert not older["applied"]
        assert older["seq"] is None
        assert older["consent"]["granted"] is True
        tie = await kit.put_consent("p1", "measurement", False, "2026-11-01T10:00:00.000Z", "kiosk")
        assert tie["applied"]
        regrant = await kit.put_consent("p1", "measurement", True, "2026-11-01T10:00:00Z", "zzz")
        assert not regrant["applied"]  # a grant at the same instant never beats the withdrawal
        now = await kit.put_consent("p1", "presence_ble", True)
        assert now["consent"]["at"] == "2027-01-15T08:00:00.000Z"  # the server's clock
        ahead = await kit.admin(
            "PUT",
            "/admin/v1/shoppers/p1/consents/clienteling",
            {"granted": True, "at": "2027-01-15T08:10:00Z"},
            expect=400,
        )
        assert "future" in ahead["detail"]
        unknown = await kit.admin(
            "PUT", "/admin/v1/shoppers/p1/consents/spying", {"granted": True}, expect=400
        )
        assert unknown["error"] == "bad_request"
        _, profile = await kit.store_call("GET", "/v1/stores/s1/profiles/p1", token)
        assert profile["consents"]["measurement"] == {
            "granted": False,
            "at": "2026-11-01T10:00:00.000Z",
            "source": "kiosk",
        }
        assert profile["profile"] is None


async def test_erasure_forgets_the_shopper_everywhere(kit: ProfileStoreKit, token: str) -> None:
    await kit.put_shopper("p1", {"visits": 2})
    await kit.put_consent("p1", "personalization", True, "2026-11-01T10:00:00Z")
    await kit.put_eid_key("p1", EID_KEY, 10)
    await kit.put_shopper("p2", {"visits": 1})
    await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": [new_event(), new_event()]})

    erased = check("ErasureResult", await kit.erase("p1"))

    assert erased["removed"] == {
        "profile": True,
        "consents": 1,
        "eid_key": True,
        "events": 2,
        "orders": 0,
        "campaign_exposures": 0,
    }
    status, body = await kit.store_call("GET", "/v1/stores/s1/profiles/p1", token)
    assert (status, body["error"]) == (404, "not_found")
    changes, _ = await pull_all(kit, token)
    assert [(change["kind"], change["id"]) for change in changes] == [("profile", "p2"), ("erasure", "p1")]
    assert changes[-1]["data"] == {}
    assert all(event["shopper_id"] is None for event in await kit.events("s1"))
    stats = await kit.stats()
    assert (stats["erasures"], stats["profiles"], stats["consents"], stats["eid_keys"]) == (1, 1, 0, 0)


async def test_a_resent_batch_changes_nothing(kit: ProfileStoreKit, token: str) -> None:
    batch = {"events": [new_event() for _ in range(50)]}
    first = await kit.store_call("POST", "/v1/stores/s1/events", token, batch)
    again = await kit.store_call("POST", "/v1/stores/s1/events", token, batch)
    assert first == (200, {"accepted": 50, "duplicates": 0, "rejected": []})
    assert again == (200, {"accepted": 0, "duplicates": 50, "rejected": []})
    assert len(await kit.events("s1")) == 50
    other = await kit.add_store("s2")
    stolen = await kit.store_call("POST", "/v1/stores/s2/events", other, {"events": batch["events"][:1]})
    assert stolen[1]["accepted"] == 0
    assert stolen[1]["rejected"][0]["reason"].startswith("id: already used")


async def test_a_resent_id_with_other_content_is_a_duplicate_and_the_first_stands(
    kit: ProfileStoreKit, token: str
) -> None:
    """docs/sync-openapi.yaml "Events (push)": the id is the event; content is not compared, never replaced."""
    first = new_event(data={"n": 1})
    changed = {**first, "data": {"n": 2}, "kind": "other"}
    assert await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": [first]}) == (
        200,
        {"accepted": 1, "duplicates": 0, "rejected": []},
    )
    assert await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": [changed]}) == (
        200,
        {"accepted": 0, "duplicates": 1, "rejected": []},
    )
    (stored,) = await kit.events("s1")
    assert (stored["kind"], stored["data"]) == (first["kind"], {"n": 1})


async def test_bad_events_are_rejected_one_by_one(kit: ProfileStoreKit, token: str) -> None:
    good = [new_event(), new_event(id=str(uuid.uuid4()).upper())]
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"d": deep}
    bad: list[Any] = [
        new_event(id="not-a-uuid"),
        new_event(**{"class": "gossip"}),
        new_event(at="yesterday"),
        new_event(at="2026-11-01T10:00:00"),  # no offset
        new_event(shopper_id="x" * 200),
        new_event(data={"text": "nul\u0000inside"}),
        new_event(data=deep),
        new_event(extra=1),
        {"id": str(uuid.uuid4())},
        "a string",
        None,
    ]
    items = [good[0], *bad, good[1]]
    status, result = await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": items})
    assert status == 200
    assert result["accepted"] == 2
    assert [entry["index"] for entry in result["rejected"]] == list(range(1, len(bad) + 1))
    assert result["rejected"][0]["id"] == "not-a-uuid"
    assert result["rejected"][-1]["id"] is None
    assert "NUL" in result["rejected"][5]["reason"]
    stored = await kit.events("s1")
    assert [event["id"] for event in stored] == [good[0]["id"], good[1]["id"].lower()]


async def test_non_finite_numbers_reject_only_their_event(kit: ProfileStoreKit, token: str) -> None:
    good = new_event()
    # json.dumps writes NaN for float("nan"): what a careless producer would send.
    bad = new_event(data={"x": float("nan")})
    body = json.dumps({"events": [good, bad]})
    status, result = await raw_post(kit, "/v1/stores/s1/events", token, body.encode())
    assert status == 200
    assert result["accepted"] == 1
    assert "non-finite" in result["rejected"][0]["reason"]


async def raw_post(
    kit: ProfileStoreKit, path: str, token: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    all_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
    async with kit._client().post(kit.base_url + path, data=data, headers=all_headers) as response:
        return response.status, await response.json()
