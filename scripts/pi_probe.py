"""Fixed computations whose outputs pi-check compares between x86 and the emulated Pi (scripts/pi_check.py).

Run as ``python scripts/pi_probe.py`` from the repository (or a copy of it) with the gateway installed; it
prints one JSON document: ``exact`` (must be bit-identical on every CPU: parsing, AES, the QR decoder's
text, the decision taken) and ``approx`` (float outputs of the model and of numpy's transcendental
functions, which may differ in the last bits between SIMD implementations: compared within
``SCORE_TOLERANCE``). Runtime dependencies only: it runs in the Pi's venv, which has no dev extras.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog, Offer
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import load_model
from edge.events import DecisionContext, Purpose
from edge.identity.eid import compute_eid
from edge.sources.ble.frames import parse_eddystone, parse_ibeacon
from edge.sources.camera.qr import QrReader

REPO: Final = Path(__file__).resolve().parents[1]
# Model scores are float32 in [0, 1]: a different SIMD path (NEON vs AVX) may change the last bits only.
SCORE_TOLERANCE: Final = 1e-5
# Monday 2026-01-05 09:30 UTC: a fixed instant, nothing here reads the machine's clock.
AT_WALL: Final = 1767605400.0
QR_TEXT: Final = "edge-gateway pi-check 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IDENTITY_KEY: Final = bytes.fromhex("7c91330e61dfea4606b5b3ecb4457d76")

# Service data for 0xFEAA and Apple manufacturer data (the bytes bleak hands over), one of each kind.
EDDYSTONE_FRAMES: Final = (
    "00e800112233445566778899aabbccddeeff0000",  # UID
    "10e80365646765000174",  # URL: scheme 03 (https://), "edge", expansions 00 (.com/) 01 (.org/), "t"
    "20000bb818800000006400000e10",  # TLM plain: 3000 mV, 24.5 C, 100 adverts, 3600 x 0.1 s
    "30e80a" + "0102030405060708",  # EID, exponent 10
    "2001" + "00112233445566778899aabb" + "cafe" + "beef",  # TLM encrypted
    "ff00",  # unknown frame type: refused
)
IBEACON_DATA: Final = "0215" + "e2c56db5dffb48d2b060d0f5a71096e0" + "0001" + "0002" + "c5"


def _offers() -> Catalog:
    rows = [
        ("coffee-a", "coffee", 3.0, 0.1),
        ("beauty-b", "beauty", 12.0, 0.2),
        ("kids-c", "kids", 8.0, 0.0),
        ("sports-d", "sports", 25.0, 0.3),
        ("grocery-e", "grocery", 1.5, 0.05),
    ]
    offers = [
        Offer.model_validate(
            {
                "id": offer_id,
                "title": offer_id,
                "category": category,
                "value": value,
                "discount": discount,
                "daily_cap_per_shopper": 1_000_000,
                "display_cooldown_s": 0.0,
            }
        )
        for offer_id, category, value, discount in rows
    ]
    return Catalog(offers=tuple(offers))


def decision_engine() -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The shipped model on a fixed feature matrix, and three decisions on fixed contexts."""
    scorer = load_model(REPO / "models" / "offers.onnx", REPO / "models" / "offers.json")
    n_features = len(scorer.manifest.inputs["features"])
    features = np.random.default_rng(20261207).random((16, n_features)).astype(np.float32)
    scores = scorer.score(features)
    engine = DecisionEngine(
        _offers(),
        scorer,
        PolicySettings(epsilon=0.0, holdout_percent=0.0, tz="Europe/Berlin"),
        ManualClock(wall=AT_WALL),
        random.Random(7),
    )
    exact: dict[str, Any] = {"model_argmax": int(np.argmax(scores))}
    approx: dict[str, list[float]] = {"model_scores": [float(s) for s in scores]}
    contexts = [
        ("personal", "s1", {"affinity": {"coffee": 0.8, "sports": 0.3}, "visits": 3}, 2),
        ("anonymous", None, None, 5),
        ("other-shopper", "s2", {"affinity": {"beauty": 0.9}, "visits": 11}, 1),
    ]
    for name, shopper, profile, audience in contexts:
        ctx = DecisionContext(
            display_id="d1",
            zone="cafe",
            at_wall=AT_WALL,
            audience=audience,
            shopper_id=shopper,
            profile=profile,
        )
        decision = engine.decide(ctx, frozenset({Purpose.PERSONALIZATION}))
        exact[f"decision_{name}"] = {
            "offer_id": decision.offer_id,
            "template": decision.template,
            "model_version": decision.model_version,
            "propensity": decision.propensity,
            "explored": decision.explored,
            "personalized": decision.personalized,
            "candidates": list(decision.candidates.offer_ids),
            "eligible": list(decision.candidates.eligible),
        }
        approx[f"decision_{name}_scores"] = [float(s) for s in decision.candidates.scores]
        if decision.features is not None:
            approx[f"decision_{name}_features"] = [
                float(x) for x in np.frombuffer(decision.features, dtype=np.float32)
            ]
    return exact, approx


def ble_frames() -> dict[str, Any]:
    """Every frame kind parsed from fixed bytes, and EIDs computed (AES-128) at fixed counters."""
    out: dict[str, Any] = {}
    for index, text in enumerate(EDDYSTONE_FRAMES):
        out[f"eddystone_{index}"] = repr(parse_eddystone(bytes.fromhex(text)))
    out["ibeacon"] = repr(parse_ibeacon(bytes.fromhex(IBEACON_DATA)))
    out["eid"] = [
        compute_eid(IDENTITY_KEY, exponent, counter).hex()
        for exponent, counter in ((0, 0), (9, 0x1234_5678), (15, 0xFFFF_FFFF), (4, 86_400))
    ]
    return out


def qr_frame() -> dict[str, Any]:
    """A QR code drawn by OpenCV's encoder into a 640x480 grey frame, read back by the camera's reader."""
    code = cv2.QRCodeEncoder.create().encode(QR_TEXT)
    code = cv2.resize(code, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    height, width = code.shape[:2]
    top, left = (480 - height) // 2, (640 - width) // 2
    frame[top : top + height, left : left + width] = code[:, :, None]
    return {
        "frame_sha256": hashlib.sha256(frame.tobytes()).hexdigest(),
        "texts": QrReader().read(frame),
    }


def main() -> None:
    exact, approx = decision_engine()
    exact["ble"] = ble_frames()
    exact["qr"] = qr_frame()
    print(json.dumps({"exact": exact, "approx": approx, "tolerance": SCORE_TOLERANCE}, sort_keys=True))


if __name__ == "__main__":
    main()
