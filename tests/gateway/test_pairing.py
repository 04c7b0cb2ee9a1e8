"""Kiosk pairing (docs/identity.md "Kiosk pairing"): each kiosk's code is published retained on its own
topic; a token naming the kiosk with its current code is served on that kiosk alone; a wrong, used, rotated
out or other kiosk's code is refused as `checkin.bad_pairing` and counted. Rotation on a manual clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.clock import ManualClock
from edge.flow.pairing import ALPHABET, CODE_CHARS, KioskPairing, PairingRefusal
from edge.transport.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, STORE, StoreKit, make_store
from tests.support.wait import until

KIOSK = "screen-cafe"
SIGN = "sign-cafe"
OTHER_KIOSK = "screen-entrance"


def _store(tmp_path: Path, port: int) -> StoreKit:
    store = make_store(tmp_path, port)
    config = store.config_path.read_text()
    for display in (KIOSK, OTHER_KIOSK):
        config = config.replace(f'id = "{display}"\n', f'id = "{display}"\nui = true\n', 1)
    # A plain sign beside the kiosk: a paired check-in must not reach it.
    config += f'[[displays]]\nid = "{SIGN}"\nzone = "cafe"\nmin_display_s = 0\n\n'
    store.config_path.write_text(config)
    return store


def _pairing(probe: Probe, display: str) -> dict[str, Any]:
    return probe.json_on(f"{ROOT}/display/{display}/pairing")[-1]


async def test_a_paired_checkin_serves_that_kiosk_only_and_bad_codes_are_counted(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = _store(tmp_path, mosquitto.port)
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, "store/#") as probe:
        generation = gateway.generation
        assert generation is not None
        await until(lambda: bool(probe.on(f"{ROOT}/display/{KIOSK}/pairing")))
        await until(lambda: bool(probe.on(f"{ROOT}/display/{OTHER_KIOSK}/pairing")))
        assert not probe.on(f"{ROOT}/display/{SIGN}/pairing")  # not a kiosk: no code
        shown = _pairing(probe, KIOSK)
        code = shown["code"]
        assert len(code) == CODE_CHARS and set(code) <= set(ALPHABET)
        assert shown["url"] == f"edgegw:pair?store={STORE}&display={KIOSK}&code={code}"
        other_code = _pairing(probe, OTHER_KIOSK)["code"]

        def refused() -> int:
            return int(generation.rejects.as_dict().get("checkin.bad_pairing", 0))

        checkin = f"{ROOT}/checkin"
        # Another kiosk's code, a made-up one, a code without its display, a display without a code
        for claims in (
            {"display": KIOSK, "pairing": other_code},
            {"display": KIOSK, "pairing": "AAAAAAAA"},
            {"pairing": code},
            {"display": KIOSK},
            {"display": OTHER_KIOSK, "pairing": other_code},  # right code, but the check-in is in cafe
        ):
            before = refused()
            await probe.publish(checkin, store.checkin("p-full", zone="cafe", source="kiosk", **claims))
            await until(lambda before=before: refused() == before + 1)
        assert not any(m.get("decision_id") for m in probe.json_on(f"{ROOT}/display/{KIOSK}/content"))

        # The right code: that kiosk shows the shopper's content, the sign beside it does not
        await probe.publish(
            checkin, store.checkin("p-full", zone="cafe", source="kiosk", display=KIOSK, pairing=code)
        )
        await until(
            lambda: any(m.get("decision_id") for m in probe.json_on(f"{ROOT}/display/{KIOSK}/content"))
        )
        assert not any(m.get("decision_id") for m in probe.json_on(f"{ROOT}/display/{SIGN}/content"))
        assert refused() == 5
        # A used code is replaced at once and serves nobody else
        await until(lambda: _pairing(probe, KIOSK)["code"] != code)
        await probe.publish(
            checkin, store.checkin("p-nomeasure", zone="cafe", source="kiosk", display=KIOSK, pairing=code)
        )
        await until(lambda: refused() == 6)
        # A my_data request must name the kiosk the token pairs with
        fresh = _pairing(probe, KIOSK)["code"]
        body = json.loads(store.checkin("p-full", zone="cafe", source="kiosk", display=KIOSK, pairing=fresh))
        await probe.publish(checkin, {**body, "request": "my_data", "display": OTHER_KIOSK})
        await until(lambda: refused() == 7)
        await probe.publish(checkin, {**body, "request": "my_data", "display": KIOSK})
        await until(
            lambda: any(
                m.get("template") == "my-data" for m in probe.json_on(f"{ROOT}/display/{KIOSK}/content")
            )
        )
        assert generation.checkins.pairing is not None
        assert generation.checkins.pairing.accepted == 2


def test_codes_rotate_on_the_clock_and_the_previous_one_holds_one_more_period() -> None:
    clock = ManualClock()
    published: list[tuple[str, dict[str, Any], bool]] = []
    codes = iter(f"CODE{n:04d}" for n in range(100))
    pairing = KioskPairing(
        {"k1": ("cafe", 60.0)},
        store_id=STORE,
        topics=Topics(ROOT),
        publish=lambda topic, payload, retain: published.append((topic, json.loads(payload), retain)),
        clock=clock,
        make_code=lambda: next(codes),
    )
    pairing.publish_all()
    assert published[-1][0] == f"{ROOT}/display/k1/pairing" and published[-1][2] is True
    first = published[-1][1]["code"]
    clock.advance(59)
    pairing.tick()
    assert len(published) == 1  # not due yet
    clock.advance(1)
    pairing.tick()
    second = published[-1][1]["code"]
    assert second != first
    assert pairing.check("k1", first, "cafe") is None  # the previous one: still valid
    assert pairing.check("k1", second, "cafe") is None
    clock.advance(60)
    pairing.tick()
    assert pairing.check("k1", first, "cafe") is PairingRefusal.WRONG_CODE  # expired
    assert pairing.check("k1", second, "cafe") is None
    assert pairing.check("k2", second, "cafe") is PairingRefusal.NOT_A_KIOSK
    assert pairing.check("k1", second, "entrance") is PairingRefusal.WRONG_ZONE
    assert pairing.check("k1", 12, "cafe") is PairingRefusal.MALFORMED
    pairing.use("k1")
    assert pairing.check("k1", second, "cafe") is PairingRefusal.WRONG_CODE  # used: gone at once
    assert pairing.refused == {
        PairingRefusal.WRONG_CODE: 2,
        PairingRefusal.NOT_A_KIOSK: 1,
        PairingRefusal.WRONG_ZONE: 1,
        PairingRefusal.MALFORMED: 1,
    }
