"""120 bad configuration pushes through a real mosquitto into the real gateway: every one refused and
reported, and the gateway unaffected (same settings, same version, same connection, still serving).

The pushes are generated from a fixed seed over five families: bad signatures, bad schemas, versions that
are not newer, huge payloads and bytes that are not a push at all.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from typing import Any

import jwt

from edge.identity.keys import generate_keypair
from tests.control.conftest import DESIRED, REPORTED, ControlKit
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, STORE

GOOD_VERSION = 50
# Signed and newer, but not a configuration a push may apply: off the allow-list (forbidden_key), a value a
# push may not use (forbidden_value), or invalid for the schema (invalid_config).
SCHEMA_BREAKERS: list[tuple[dict[str, Any], str]] = [
    ({"colour": "blue"}, "forbidden_key"),
    ({"mqtt": {"port": 70000}}, "forbidden_key"),
    ({"mqtt": {"port": "eighteen83"}}, "forbidden_key"),
    ({"mqtt": {"password": "hunter2"}}, "forbidden_key"),
    ({"zones": []}, "invalid_config"),
    ({"zones": [{"id": "bad id with spaces"}]}, "invalid_config"),
    ({"zones": [{"id": "a"}, {"id": "a"}]}, "invalid_config"),
    ({"displays": [{"id": "d", "zone": "nowhere"}]}, "invalid_config"),
    ({"displays": "screen-1"}, "invalid_config"),
    ({"decisions": {"policy": {"epsilon": 2}}}, "invalid_config"),
    ({"decisions": {"policy": {"epsilon": "often"}}}, "invalid_config"),
    ({"decisions": {"model": "/nonexistent/model.onnx", "model_sha256": "0" * 64}}, "forbidden_value"),
    ({"decisions": {"offers_file": "/nonexistent/offers.toml"}}, "forbidden_value"),
    ({"decisions": {"offers_file": "not-delivered.toml"}}, "invalid_config"),
    ({"presence": {"checkin_timeout_s": -1}}, "invalid_config"),
    ({"logging": {"level": "LOUD"}}, "invalid_config"),
    ({"logging": {"level": "DEBUG"}}, "forbidden_value"),
    ({"health": {"interval_s": 0}}, "invalid_config"),
    ({"ble": {"enabled": True, "zone": "nowhere"}}, "forbidden_key"),
    ({"cameras": [{"id": "c", "source": "0", "zone": "nowhere"}]}, "invalid_config"),
    ({"cameras": [{"id": "c", "source": "0", "zone": "cafe", "loop": True}]}, "forbidden_key"),
    ({"cameras": [{"id": "c", "source": "rtsp://198.51.100.7/live", "zone": "cafe"}]}, "forbidden_value"),
    ({"sync": {"enabled": True}}, "forbidden_key"),
    ({"store": {"id": "s9"}}, "forbidden_key"),
    ({"control": {"enabled": False}}, "forbidden_key"),
    ({"ledger": {"path": "/tmp/elsewhere.sqlite"}}, "forbidden_key"),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bad_pushes(control: ControlKit, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """(family, payload, expected error prefix) for 120+ pushes."""
    cases: list[tuple[str, bytes, str]] = []
    good_config = {"presence": {"checkin_timeout_s": 60}}
    for index in range(24):  # bad signatures
        version = GOOD_VERSION + 1 + index
        kind = index % 6
        if kind == 0:
            other, _ = generate_keypair()
            cases.append(("signature", control.push(version, good_config, key=other), "bad_signature"))
        elif kind == 1:
            token = control.push(version, good_config).decode()
            header, _body, signature = token.split(".")
            forged = _b64(
                json.dumps(
                    {"aud": STORE, "version": version, "config": {"logging": {"level": "DEBUG"}}}
                ).encode()
            )
            cases.append(("signature", f"{header}.{forged}.{signature}".encode(), "bad_signature"))
        elif kind == 2:
            body = {"aud": STORE, "version": version, "config": good_config}
            cases.append(("signature", jwt.encode(body, None, algorithm="none").encode(), "bad_algorithm"))
        elif kind == 3:
            body = {"aud": STORE, "version": version, "config": good_config}
            secret = "".join(rng.choice("abcdef") for _ in range(32))
            cases.append(("signature", jwt.encode(body, secret, algorithm="HS256").encode(), "bad_algorithm"))
        elif kind == 4:
            token = control.push(version, good_config).decode()
            cut = rng.randrange(1, 40)
            # A cut signature is either the wrong length of base64 (malformed) or wrong bytes.
            cases.append(("signature", token[:-cut].encode(), "bad_signature|malformed"))
        else:
            cases.append(
                ("signature", control.push(version, good_config, aud="another-store"), "wrong_store")
            )
    for index in range(36):  # bad schemas (signed, newer, but not a valid configuration)
        breaker, expected = SCHEMA_BREAKERS[index % len(SCHEMA_BREAKERS)]
        version = GOOD_VERSION + 100 + index
        cases.append(("schema", control.push(version, breaker), expected))
    for index in range(6):  # claims of the wrong shape
        version: Any = ["7", 0, -1, 1.5, True, None][index]
        cases.append(("schema", control.push(version, good_config), "bad_claims"))
    for index in range(24):  # not newer: the applied version and below
        version = GOOD_VERSION - rng.randrange(1, GOOD_VERSION) if index else GOOD_VERSION - 1
        cases.append(("older", control.push(version, {"logging": {"level": "ERROR"}}), "not_newer"))
    for index in range(12):  # huge: over the limit, signed or not
        size = 262_144 + 1 + rng.randrange(0, 500_000)
        if index % 2:
            blob = {"zones": [{"id": f"z{i}", "name": "x" * 200} for i in range(size // 220)]}
            payload = control.push(GOOD_VERSION + 200 + index, blob)
        else:
            payload = bytes(rng.randrange(256) for _ in range(size))
        cases.append(("huge", payload, "too_large"))
    for index in range(18):  # noise
        size = rng.randrange(1, 600)
        kind = index % 3
        if kind == 0:
            payload = bytes(rng.randrange(256) for _ in range(size))
            expected = "not_text|malformed"
        elif kind == 1:
            payload = "".join(rng.choice("abcXYZ019-_.") for _ in range(size)).encode()
            expected = "malformed|bad_algorithm|bad_signature"
        else:
            payload = json.dumps({"version": GOOD_VERSION + 300 + index, "config": good_config}).encode()
            expected = "malformed"
        cases.append(("noise", payload, expected))
    return cases


async def test_bad_pushes_are_all_refused_and_the_gateway_is_unaffected(control: ControlKit) -> None:
    store = control.store
    rng = random.Random(20261201)
    async with (
        Probe(store.port, REPORTED, f"{ROOT}/display/screen-cafe/content") as probe,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        assert gateway.control is not None and gateway.generation.link is not None
        await probe.publish(
            DESIRED, control.push(GOOD_VERSION, {"presence": {"checkin_timeout_s": 60}}), retain=True
        )
        await probe.wait_for(
            lambda: probe.json_on(REPORTED) and probe.json_on(REPORTED)[-1]["status"] == "applied"
        )
        settings, link = gateway.settings, gateway.generation.link
        cases = _bad_pushes(control, rng)
        assert len(cases) >= 120
        families: Counter[str] = Counter()
        for number, (family, payload, expected) in enumerate(cases, start=2):
            # One at a time, each answered before the next: a queued push would be superseded, not judged.
            await probe.publish(DESIRED, payload, retain=True)
            await probe.wait_for(lambda n=number: len(probe.json_on(REPORTED)) >= n, timeout=10)
            report = probe.json_on(REPORTED)[number - 1]
            assert report["status"] == "rejected", (family, report)
            assert report["error"].split(":")[0] in expected.split("|"), (family, expected, report)
            assert report["current"] == GOOD_VERSION
            families[family] += 1
        assert families == Counter({"signature": 24, "schema": 42, "older": 24, "huge": 12, "noise": 18})
        # Unaffected: same settings, version, connection; nothing pending; still deciding.
        assert gateway.settings is settings and gateway.generation.link is link
        assert link.counters["disconnects"] == 0
        assert gateway.config_version == str(GOOD_VERSION)
        assert gateway.control.state.pending is None
        assert sum(gateway.control.rejected.values()) == len(cases)
        await probe.publish(f"{ROOT}/checkin", {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await probe.wait_for(
            lambda: any(m.get("decision_id") for m in probe.json_on(f"{ROOT}/display/screen-cafe/content"))
        )
