"""The shopper's rights at the store, for real: two gateways, the reference cloud, mosquitto.

A consent withdrawn and an erasure asked for at store-001's kiosk (the shopper's own token) take effect there
at once, reach the cloud as privacy events, and store-002 pulls them; a replayed token changes nothing. The
cloud's signed export request is answered once, through the outbox, as `privacy_export` events; forged and
misaddressed requests are counted and answered nowhere. A kiosk check-in asking `my_data` shows the summary
on that kiosk only, and it goes when the shopper leaves.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.daemon import Gateway
from edge.events import Purpose
from edge.identity.keys import generate_keypair, sign_token
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section
from tests.support.wait import until

OTHER = "store-002"
OTHER_ROOT = f"store/{OTHER}"
PURPOSES = ("personalization", "measurement", "clienteling", "device_preferences")


def _kit(
    tmp_path: Path,
    name: str,
    port: int,
    sync: Any,
    *,
    store_id: str = STORE,
    kiosk: bool = False,
    leave_s: float = 600,
) -> StoreKit:
    workdir = tmp_path / name
    workdir.mkdir()
    store = make_store(workdir, port, seed=False, zones=("cafe", "entrance"), sync=sync(workdir))
    config = store.config_path.read_text().replace(f'id = "{STORE}"', f'id = "{store_id}"', 1)
    if kiosk:
        config = config.replace(
            'id = "screen-cafe"\nzone = "cafe"\n', 'id = "screen-cafe"\nzone = "cafe"\nui = true\n'
        )
    store.config_path.write_text(config + f"\n[presence]\ncheckin_timeout_s = {leave_s}\n")
    return store


@contextlib.asynccontextmanager
async def _two_stores(
    tmp_path: Path, mosquitto: Mosquitto, leave_s: float = 600
) -> AsyncIterator[tuple[Any, StoreKit, StoreKit, Gateway, Gateway]]:
    async with running_profile_store(tmp_path) as cloud:
        tokens = {STORE: await cloud.add_store(STORE), OTHER: await cloud.add_store(OTHER)}
        await cloud.put_shopper("p-ana", {"visits": 4, "staff_display_name": "Ana"})
        await cloud.put_shopper("p-ben", {"visits": 1})
        for shopper in ("p-ana", "p-ben"):
            for purpose in PURPOSES:
                await cloud.put_consent(shopper, purpose, True, source="app")

        def sync_for(store_id: str) -> Any:
            return lambda workdir: sync_section(
                cloud.base_url, tokens[store_id], workdir, pull_interval_s=0.2
            )

        here = _kit(tmp_path, "here", mosquitto.port, sync_for(STORE), kiosk=True, leave_s=leave_s)
        there = _kit(tmp_path, "there", mosquitto.port, sync_for(OTHER), store_id=OTHER)
        async with running_gateway(here.settings()) as a, running_gateway(there.settings()) as b:
            yield cloud, here, there, a, b


def _action(kit: StoreKit, sub: str, **body: Any) -> dict[str, Any]:
    return {"v": 1, "token": kit.token(sub), "source": "kiosk", **body}


async def test_a_withdrawal_and_an_erasure_at_one_stores_kiosk_count_in_the_other_store(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        _two_stores(tmp_path, mosquitto) as (cloud, here, there, a, b),
        Probe(mosquitto.port, "store/#") as probe,
    ):
        ga, gb = a.generation, b.generation
        assert ga is not None and gb is not None
        # Both shop at store-002 too (their home is store-001): a check-in there makes them its shoppers.
        for shopper in ("p-ana", "p-ben"):
            await probe.publish(f"{OTHER_ROOT}/checkin", there.checkin(shopper, zone="entrance", aud=OTHER))
        for generation in (ga, gb):
            await until(lambda g=generation: g.consents.has("p-ana", Purpose.PERSONALIZATION))

        # Withdrawn at store-001's kiosk: at once here, answered, then in the cloud and at store-002.
        withdrawal = _action(
            here, "p-ana", action="consent", purpose="personalization", granted=False, reply_to="k-1"
        )
        await probe.publish(f"{ROOT}/privacy/action", withdrawal)
        await until(lambda: bool(probe.json_on(f"{ROOT}/privacy/result/k-1")))
        assert probe.json_on(f"{ROOT}/privacy/result/k-1")[0]["status"] == "accepted"
        assert not ga.consents.has("p-ana", Purpose.PERSONALIZATION)
        await until(lambda: not gb.consents.has("p-ana", Purpose.PERSONALIZATION), timeout=15)
        assert gb.consents.has("p-ana", Purpose.MEASUREMENT)  # only what was withdrawn

        # The same message again (a replayed token): refused, nothing changes.
        await probe.publish(f"{ROOT}/privacy/action", {**withdrawal, "reply_to": "k-2"})
        await until(lambda: bool(probe.json_on(f"{ROOT}/privacy/result/k-2")))
        assert probe.json_on(f"{ROOT}/privacy/result/k-2")[0] == {
            **probe.json_on(f"{ROOT}/privacy/result/k-2")[0],
            "status": "refused",
            "reason": "replayed",
        }
        # A grant of a purpose that is not one, and a forged token: counted, answered.
        await probe.publish(
            f"{ROOT}/privacy/action", _action(here, "p-ben", action="consent", purpose="all", granted=True)
        )
        forged = {
            **_action(here, "p-ben", action="erase"),
            "token": here.token("p-ben", key=generate_keypair()[0]),
        }
        await probe.publish(f"{ROOT}/privacy/action", forged)
        await until(lambda: ga.rejects.as_dict().get("privacy.bad_purpose") == 1)
        await until(lambda: ga.rejects.as_dict().get("privacy.bad_signature") == 1)
        assert gb.consents.has("p-ben", Purpose.PERSONALIZATION)

        # Ben asks to be forgotten at store-001's till: gone here, in the cloud, and at store-002.
        await probe.publish(f"{ROOT}/privacy/action", _action(here, "p-ben", action="erase", source="till"))
        await until(lambda: not ga.consents.granted("p-ben"))
        assert ga.ledger.replica.tombstone("p-ben") is not None
        await until(lambda: not gb.consents.granted("p-ben"), timeout=15)
        await until(lambda: gb.ledger.replica.tombstone("p-ben") is not None)
        assert gb.profiles.get("p-ben") is None

        pushed = [e for e in await cloud.events(STORE) if e["kind"] in ("consent", "erasure")]
        assert sorted((e["kind"], e["shopper_id"], e["data"].get("source")) for e in pushed) == [
            ("consent", "p-ana", "kiosk"),
            ("erasure", None, None),  # applied: the cloud's event log keeps no id of an erased shopper
        ]


def _request(kit: StoreKit, **claims: Any) -> bytes:
    now = int(timeline.now())
    body = {"aud": STORE, "kind": "export", "request_id": "r-1", "sub": "p-ana", "iat": now, "exp": now + 600}
    body.update(claims)
    return sign_token(kit.private_pem, {k: v for k, v in body.items() if v is not None}).encode()


async def test_the_clouds_signed_request_is_answered_once_through_the_outbox(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        _two_stores(tmp_path, mosquitto) as (cloud, here, _there, a, _b),
        Probe(mosquitto.port, "store/#") as probe,
    ):
        ga = a.generation
        assert ga is not None
        await until(lambda: ga.consents.has("p-ana", Purpose.PERSONALIZATION))
        await probe.publish(f"{ROOT}/checkin", here.checkin("p-ana", zone="entrance"))
        await until(lambda: ga.floor.presence.zone_of("p-ana") == "entrance")
        # Presence is set when the check-in is taken, the decision is recorded after it: the export below must
        # find the decision, so the request goes out once it is in the ledger (a loaded CI machine once sent
        # it in between, and the export rightly had no decision yet).
        ledger = a.ledger
        assert ledger is not None

        async def decided() -> bool:
            return bool((await ledger.privacy_rows("p-ana")).decisions)

        await until(decided, what="p-ana's decision in the ledger")
        topic = f"{ROOT}/privacy/request"
        for _ in range(2):
            await probe.publish(topic, _request(here))
        await probe.publish(topic, _request(here, request_id="r-forged")[:-4] + b"AAAA")
        await probe.publish(topic, _request(here, request_id="r-x", aud=OTHER))
        await probe.publish(topic, _request(here, request_id="r-old", exp=int(timeline.now()) - 3600))
        stranger = generate_keypair()[0]  # a key this store does not hold, no kid: every key tried, none fits
        await probe.publish(
            topic, sign_token(stranger, {"aud": STORE, "kind": "export", "request_id": "r-k"}).encode()
        )

        async def exports() -> list[dict[str, Any]]:
            return [e for e in await cloud.events(STORE) if e["kind"] == "privacy_export"]

        async def answered() -> bool:
            return bool(await exports()) and ga.privacy.counters.export_duplicates >= 1

        await until(answered, timeout=15)
        await until(lambda: ga.rejects.as_dict().get("privacy_request.bad_signature") == 2)
        found = await exports()
        assert {e["data"]["request_id"] for e in found} == {"r-1"}
        assert sorted(e["data"]["part"] for e in found) == list(range(1, found[0]["data"]["parts"] + 1))
        assert all(e["class"] == "privacy" and e["shopper_id"] == "p-ana" for e in found)
        doc = found[0]["data"]["export"]
        assert doc["shopper_id"] == "p-ana" and doc["store_id"] == STORE
        assert {c["purpose"] for c in doc["consents"]} == set(PURPOSES)
        assert doc["signals"]["now"] == [{"zone": "entrance", "source": "check-in"}]
        assert doc["decisions"] and doc["decisions"][0]["why"]  # the running model explains its decision
        assert "p-ben" not in json.dumps(found)
        rejected = ga.rejects.as_dict()
        assert rejected.get("privacy_request.wrong_store") == 1
        assert rejected.get("privacy_request.expired") == 1


async def test_a_kiosk_shows_my_data_on_itself_only_and_clears_it_when_the_shopper_leaves(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        _two_stores(tmp_path, mosquitto, leave_s=2.0) as (_, here, _there, a, _b),
        Probe(mosquitto.port, "store/#") as probe,
    ):
        ga = a.generation
        assert ga is not None
        await until(lambda: ga.consents.has("p-ana", Purpose.PERSONALIZATION))
        kiosk = f"{ROOT}/display/screen-cafe/content"
        other = f"{ROOT}/display/screen-entrance/content"
        body = json.loads(here.checkin("p-ana", zone="cafe", source="kiosk"))
        await probe.publish(f"{ROOT}/checkin", {**body, "request": "my_data", "display": "screen-cafe"})
        await until(lambda: any(m.get("template") == "my-data" for m in probe.json_on(kiosk)))
        shown = next(m for m in probe.json_on(kiosk) if m.get("template") == "my-data")
        assert {c["purpose"] for c in shown["data"]["consents"]} == set(PURPOSES)
        assert shown["decision_id"] is None and shown["expires_at"] is not None
        assert "p-ana" not in json.dumps(shown) and "p-ben" not in json.dumps(shown)
        assert all(m.get("template") != "my-data" for m in probe.json_on(other))
        # Not a kiosk display, or an app check-in asking for it: refused whole, counted
        app = json.loads(here.checkin("p-ben", zone="entrance"))
        await probe.publish(f"{ROOT}/checkin", {**app, "request": "my_data", "display": "screen-entrance"})
        await until(lambda: ga.rejects.as_dict().get("checkin.bad_request") == 1)
        # Ana leaves (the check-in presence times out after 2 s here): her summary goes with her, long before
        # its own expiry (60 s)
        await until(lambda: ga.floor.presence.zone_of("p-ana") is None, timeout=10)
        await until(lambda: probe.json_on(kiosk)[-1].get("template") != "my-data")


async def test_an_objection_at_the_kiosk_takes_personal_content_off_the_screen_at_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Objection to direct marketing (a `personalization` withdrawal at a touchpoint): the screen showing the
    shopper's personal decision changes now, the choice is on disk, and the next decision is context-only."""
    async with (
        _two_stores(tmp_path, mosquitto) as (_, here, _there, a, _b),
        Probe(mosquitto.port, "store/#") as probe,
    ):
        ga = a.generation
        assert ga is not None
        await until(lambda: ga.consents.has("p-ana", Purpose.PERSONALIZATION))
        screen = f"{ROOT}/display/screen-entrance/content"
        await probe.publish(f"{ROOT}/checkin", here.checkin("p-ana", zone="entrance"))
        await until(lambda: any(m.get("decision_id") for m in probe.json_on(screen)))
        personal = next(m for m in probe.json_on(screen) if m.get("decision_id"))
        first = await ga.ledger.decision(personal["decision_id"])
        assert first is not None and first["personalized"] is True
        objection = {"action": "consent", "purpose": "personalization", "granted": False}
        await probe.publish(f"{ROOT}/privacy/action", _action(here, "p-ana", **objection))
        await until(lambda: probe.json_on(screen)[-1]["version"] > personal["version"])
        assert probe.json_on(screen)[-1]["decision_id"] != personal["decision_id"]
        rows = [r for r in await ga.ledger.load_consents() if r.purpose is Purpose.PERSONALIZATION]
        assert [(r.shopper_id, r.granted, r.source) for r in rows if r.shopper_id == "p-ana"] == [
            ("p-ana", False, "kiosk")
        ]
        await probe.publish(f"{ROOT}/checkin", here.checkin("p-ana", zone="cafe"))
        cafe = f"{ROOT}/display/screen-cafe/content"
        await until(lambda: any(m.get("decision_id") for m in probe.json_on(cafe)))
        later = next(m for m in probe.json_on(cafe) if m.get("decision_id"))
        again = await ga.ledger.decision(later["decision_id"])
        assert again is not None and again["personalized"] is False
