"""Every event kind the gateway pushes, as the reference cloud received it, against its schema in
docs/sync-openapi.yaml (`x-event-data`): an integrator building the cloud side codes to that schema.

One store goes through everything that makes an event: a check-in (decisions), a screen's ack (exposure), a
staff answer, a sale with the shopper's token that also collects an order, a consent withdrawn and an
erasure at a kiosk, and the cloud's export request. Each kind must arrive, and each event's `data` must
validate against its kind's schema; a kind the spec does not describe fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from edge.events import Purpose
from edge.identity.keys import sign_token
from tests.gateway.test_pickup import NOTICES, _store
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.mqtt import Probe
from tests.support.store import ROOT, STORE
from tests.support.wait import until

REPO = Path(__file__).resolve().parents[2]
KINDS = {
    "decision",
    "exposure",
    "staff_interaction",
    "conversion",
    "order_collected",
    "consent",
    "erasure",
    "privacy_export",
}


def _validators() -> dict[str, jsonschema.protocols.Validator]:
    spec = yaml.safe_load((REPO / "docs" / "sync-openapi.yaml").read_text())
    components = spec["components"]
    mapping = components["schemas"]["Event"]["x-event-data"]
    validators = {}
    for kind, ref in mapping.items():
        schema = {"$ref": ref, "components": components}
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)
    return validators


def test_the_spec_describes_every_kind_the_gateway_pushes() -> None:
    assert set(_validators()) == KINDS


async def test_every_pushed_event_matches_its_kinds_schema(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (
        _store(tmp_path, mosquitto) as (cloud, store, gateway),
        Probe(mosquitto.port, f"{ROOT}/#") as probe,
    ):
        generation = gateway.generation
        assert generation is not None
        await until(lambda: generation.consents.has("p-ana", Purpose.CLIENTELING))
        await until(lambda: len(generation.pickup.orders) == 2)
        screen = f"{ROOT}/display/screen-fitting-rooms/content"
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-ana", zone="fitting-rooms"))
        await until(lambda: any(m.get("decision_id") for m in probe.json_on(screen)))
        shown = next(m for m in probe.json_on(screen) if m.get("decision_id"))
        ack = {"v": 1, "version": shown["version"], "decision_id": shown["decision_id"], "status": "shown"}
        await probe.publish(f"{ROOT}/display/screen-fitting-rooms/ack", ack)
        await until(lambda: bool(probe.json_on(NOTICES)))
        notice = probe.json_on(NOTICES)[0]
        await probe.publish(
            f"{ROOT}/staff/fitting/ack", {"v": 1, "notice_id": notice["notice_id"], "action": "assisting"}
        )
        sale = {
            "v": 1,
            "txn_id": "t-contract",
            "token": store.token("p-ana"),
            "items": [{"sku": "tee", "qty": 2, "price": 9.5}],
            "currency": "EUR",
            "collected_orders": ["o-ana"],
        }
        await probe.publish(f"{ROOT}/pos/lane-1/transaction", sale)
        action = {"v": 1, "token": store.token("p-ben"), "action": "consent", "purpose": "personalization"}
        await probe.publish(f"{ROOT}/privacy/action", {**action, "granted": False, "source": "kiosk"})
        await probe.publish(
            f"{ROOT}/privacy/action", {"v": 1, "token": store.token("p-cy"), "action": "erase"}
        )
        now = int(clock.now())
        request = {
            "aud": STORE,
            "kind": "export",
            "request_id": "r-contract",
            "sub": "p-ana",
            "iat": now,
            "exp": now + 600,
        }
        await probe.publish(f"{ROOT}/privacy/request", sign_token(store.private_pem, request).encode())

        async def every_kind() -> bool:
            return {e["kind"] for e in await cloud.events(STORE)} >= KINDS

        await until(every_kind, timeout=20)
        events: list[dict[str, Any]] = await cloud.events(STORE)
    validators = _validators()
    problems = []
    for event in events:
        validator = validators.get(event["kind"])
        if validator is None:
            problems.append(f"{event['kind']}: not described in the spec")
            continue
        problems.extend(
            f"{event['kind']}: {error.json_path}: {error.message}"
            for error in validator.iter_errors(event["data"])
        )
    assert problems == [], json.dumps(problems, indent=1)
