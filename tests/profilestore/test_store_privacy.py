"""A consent or an erasure pushed by one store counts everywhere (issue 15, section 3): the reference store
applies it to its own state once, and every other store that holds the shopper pulls the result."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from edge.clock import ManualClock
from tests.support.profilestore import ProfileStoreKit, running_profile_store

AT = "2026-11-01T10:00:00.000Z"  # the store-side actions
GRANTED = "2026-11-01T09:00:00.000Z"  # the shoppers' grants, earlier
NOW = 1_793_534_400.0  # 2026-11-01T12:00:00Z: the cloud's (manual) clock


def _event(kind: str, shopper: str, data: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "kind": kind,
        "class": "privacy",
        "at": AT,
        "shopper_id": shopper,
        "data": data,
    }


async def _pull(cloud: ProfileStoreKit, store: str, token: str) -> list[dict[str, Any]]:
    status, page = await cloud.store_call("GET", f"/v1/stores/{store}/changes?limit=1000", token)
    assert status == 200
    return list(page["changes"])


async def _push(cloud: ProfileStoreKit, store: str, token: str, *events: dict[str, Any]) -> dict[str, Any]:
    status, answer = await cloud.store_call(
        "POST", f"/v1/stores/{store}/events", token, {"events": list(events)}
    )
    assert status == 200
    return dict(answer)


async def test_a_store_side_withdrawal_and_erasure_reach_every_other_store(tmp_path: Path) -> None:
    clock = ManualClock(wall=NOW)
    async with running_profile_store(tmp_path, clock=clock) as cloud:
        kiosk_store, other = await cloud.add_store("s1"), await cloud.add_store("s2")
        for shopper, purposes in (("p-1", ("personalization", "measurement")), ("p-2", ("personalization",))):
            await cloud.put_shopper(shopper, {"visits": 1}, home_store="s2")  # s1 sees them at its kiosk
            for purpose in purposes:
                await cloud.put_consent(shopper, purpose, True, at=GRANTED, source="app")
        # s1's kiosk: p-1 withdraws personalization (later than the cloud's grant); resent once.
        withdrawal = _event(
            "consent", "p-1", {"purpose": "personalization", "granted": False, "at": AT, "source": "kiosk"}
        )
        await _push(cloud, "s1", kiosk_store, withdrawal)
        await _push(cloud, "s1", kiosk_store, withdrawal)
        consents = [c for c in await _pull(cloud, "s2", other) if c["kind"] == "consent" and c["id"] == "p-1"]
        assert {(c["data"]["purpose"], c["data"]["granted"]) for c in consents} == {
            ("personalization", False),
            ("measurement", True),
        }
        # Malformed consent data (an unknown purpose, no time) is stored as an event and changes nothing.
        for data in (
            {"purpose": "telepathy", "granted": False, "at": AT, "source": "kiosk"},
            {"granted": False},
        ):
            answer = await _push(cloud, "s1", kiosk_store, _event("consent", "p-2", data))
            assert answer["accepted"] == 1
        status, profile = await cloud.store_call("GET", "/v1/stores/s2/profiles/p-2", other)
        assert status == 200 and profile["consents"]["personalization"]["granted"] is True
        # s1's till: p-2 asks to be forgotten; the erasure reaches s2's pull, the profile is gone.
        erasure = _event("erasure", "p-2", {})
        await _push(cloud, "s1", kiosk_store, erasure)
        assert any(c["kind"] == "erasure" and c["id"] == "p-2" for c in await _pull(cloud, "s2", other))
        status, _ = await cloud.store_call("GET", "/v1/stores/s2/profiles/p-2", other)
        assert status == 404
        # p-2 comes back and grants again; the erasure event resent later erases nothing more.
        clock.advance(60)
        await cloud.put_consent("p-2", "personalization", True, source="app")  # now: after the erasure
        answer = await _push(cloud, "s1", kiosk_store, erasure)
        assert answer["duplicates"] == 1
        status, profile = await cloud.store_call("GET", "/v1/stores/s2/profiles/p-2", other)
        assert status == 200 and profile["consents"]["personalization"]["granted"] is True
