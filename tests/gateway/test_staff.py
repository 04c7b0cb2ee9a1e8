"""Staff notices through the real gateway and a real broker: one per visit of a shopper who asked for personal
service, none for anyone else, never a shopper id, withdrawn when they leave; answers stored once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.clock import iso_utc
from edge.events import Purpose
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import CONSENTED_BEFORE_S, ROOT, StoreKit, make_store
from tests.support.wait import until

NOTICES = f"{ROOT}/staff/notice/fitting"
ZONES = ("cafe", "fitting-rooms", "fitting-lounge")


def _shopper(shopper_id: str, consents: dict[str, bool], profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": shopper_id,
        "at": iso_utc(clock.now() - CONSENTED_BEFORE_S),
        "consents": consents,
        "profile": profile,
    }


def _store(workdir: Path, port: int) -> StoreKit:
    store = make_store(workdir, port, zones=ZONES)
    seed = json.loads((workdir / "shoppers.json").read_text())
    seed["shoppers"] += [
        _shopper(
            "p-vip",
            {"clienteling": True, "measurement": True},
            {
                "staff_display_name": "Ana",
                "name": "Ana Example",  # never in a notice: only the name chosen for staff
                "email": "ana@example.org",
                "language": "pt",
                "sizes": {"shoes": "38", "tops": "S"},
                "interests": ["running", "linen"],
                "accessibility": {"text_scale": 1.5},
            },
        ),
        _shopper("p-quiet", {"clienteling": True, "measurement": False}, {"language": "de"}),
        _shopper("p-none", {"clienteling": False, "measurement": True}, {"staff_display_name": "Bo"}),
    ]
    (workdir / "shoppers.json").write_text(json.dumps(seed))
    store.config_path.write_text(
        store.config_path.read_text()
        + '\n[staff]\nteams = { fitting = ["fitting-rooms", "fitting-lounge"] }\n'
    )
    return store


async def test_one_notice_per_visit_withdrawn_on_leaving_and_answers_stored_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = _store(tmp_path, mosquitto.port)
    async with (
        Probe(mosquitto.port, f"{ROOT}/staff/#") as probe,
        running_gateway(store.settings()) as gateway,
    ):
        generation = gateway.generation
        assert generation is not None and generation.staff is not None

        def notices() -> list[dict[str, Any]]:
            return probe.json_on(NOTICES)

        for shopper in ("p-none", "p-vip", "p-quiet"):
            await probe.publish(f"{ROOT}/checkin", store.checkin(shopper, zone="fitting-rooms"))
        await until(lambda: len(notices()) == 2)
        vip, quiet = notices()
        assert vip == {
            "v": 1,
            "ts": vip["ts"],
            "notice_id": vip["notice_id"],
            "status": "open",
            "zone": "fitting-rooms",
            "display_name": "Ana",
            "language": "pt",
            "sizes": {"shoes": "38", "tops": "S"},
            "interests": ["running", "linen"],
            "needs": {"text_scale": 1.5},
        }
        assert (quiet["status"], quiet["language"], "display_name" in quiet) == ("open", "de", False)
        # Moving to the lounge, another zone of the same team: the same visit, no second notice. Then the
        # quiet shopper goes to the cafe, which the team does not look after: their notice is withdrawn.
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-vip", zone="fitting-lounge"))
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-quiet", zone="cafe"))
        await until(lambda: len(notices()) == 3)
        assert notices()[2] == {
            "v": 1,
            "ts": notices()[2]["ts"],
            "notice_id": quiet["notice_id"],
            "status": "withdrawn",
            "zone": "fitting-rooms",
        }

        # Answers: stored once, with the shopper's id only under measurement; the rest refused and counted.
        ack = f"{ROOT}/staff/fitting/ack"
        for notice_id, action in ((vip["notice_id"], "assisting"), (vip["notice_id"], "assisting")):
            await probe.publish(ack, {"v": 1, "notice_id": notice_id, "action": action})
        await probe.publish(
            ack, {"v": 1, "notice_id": quiet["notice_id"], "action": "assisting"}
        )  # withdrawn
        await probe.publish(ack, {"v": 1, "notice_id": vip["notice_id"], "action": "hugging"})
        await probe.publish(
            f"{ROOT}/staff/cafe/ack", {"v": 1, "notice_id": vip["notice_id"], "action": "dismissed"}
        )
        await probe.publish(ack, {"v": 1, "notice_id": "../../etc", "action": "assisting"})
        await probe.publish(ack, b"not json")
        staff, rejects = generation.staff, generation.rejects
        await until(lambda: staff.stats().answers_repeated == 1)
        await until(lambda: sum(n for (kind, _), n in rejects.counts.items() if kind == "staff_ack") == 5)
        assert {k: v for k, v in rejects.as_dict().items() if k.startswith("staff_ack.")} == {
            "staff_ack.unknown_notice": 1,
            "staff_ack.bad_action": 1,
            "staff_ack.unknown_team": 1,
            "staff_ack.bad_notice_id": 1,
            "staff_ack.not_json": 1,
        }
        rows = await generation.ledger.staff_interactions()
        assert [(n, a, t, z, s) for n, a, t, z, _, s in rows] == [
            (vip["notice_id"], "assisting", "fitting", "fitting-rooms", "p-vip")
        ]

        # The shopper withdraws clienteling while inside: the notice goes at once.
        await generation.consents.apply("p-vip", Purpose.CLIENTELING, False, clock.now(), "app")
        await until(lambda: len(notices()) == 4)
        assert (notices()[3]["notice_id"], notices()[3]["status"]) == (vip["notice_id"], "withdrawn")

        # Nothing a tablet received names a shopper, their contact details or their token.
        for topic, payload, _ in probe.messages:
            if topic.startswith(f"{ROOT}/staff/notice/"):
                assert b"p-" not in payload and b"@" not in payload and b"Example" not in payload
        assert all(n["notice_id"] not in {"p-vip", "p-quiet", "p-none"} for n in notices())
