"""The right of access: `edge-gateway privacy export` on a real ledger, explained with the real model."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import cli
from edge.clock import ManualClock, iso_utc
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import FEATURE_NAMES, N_FEATURES
from edge.events import Candidates, Decision, Purpose
from edge.ledger import Ledger
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.ops import ConsentRow
from edge.privacy.explain import BASELINE, GROUPS, contributions
from edge.sync.wire import Change, ChangeKind
from tests.support.store import make_store

REPO = Path(__file__).resolve().parents[2]
SHOPPER = "p-export-1"
OTHER = "p-export-2"

# |logit| <= 17 x 0.3 x 1: float32 scores keep the log-odds exact to ~1e-4 there (not near saturation)
inputs = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False, width=32)
weights_ = st.floats(min_value=-0.3, max_value=0.3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(inputs, min_size=N_FEATURES, max_size=N_FEATURES),
    st.lists(weights_, min_size=N_FEATURES, max_size=N_FEATURES),
)
def test_for_a_linear_model_a_contribution_is_the_groups_weighted_inputs(
    row: list[float], weights: list[float]
) -> None:
    w = np.asarray(weights, dtype=np.float64)

    def score(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return (1.0 / (1.0 + np.exp(-(batch.astype(np.float64) @ w)))).astype(np.float32)

    x = np.asarray(row, dtype=np.float32)
    found = contributions(score, x.tobytes())
    assert found is not None and len(found) == len(GROUPS)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    by_key = {c.feature: c.logit for c in found}
    for key, _, names in GROUPS:
        expected = sum((float(x[index[n]]) - BASELINE.get(n, 0.0)) * w[index[n]] for n in names)
        # float32 scores through the logit: close, not exact
        assert by_key[key] == pytest.approx(expected, abs=2e-3 + 2e-3 * abs(expected))
    assert [abs(c.logit) for c in found] == sorted((abs(c.logit) for c in found), reverse=True)


def test_a_row_of_the_wrong_size_or_not_finite_explains_nothing() -> None:
    def score(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.full(batch.shape[0], 0.5, dtype=np.float32)

    assert contributions(score, b"\x00" * 8) is None
    bad = np.zeros(N_FEATURES, dtype=np.float32)
    bad[3] = np.nan
    assert contributions(score, bad.tobytes()) is None


def _decision(
    decision_id: str, at: float, shopper: str | None, features: bytes | None, version: str
) -> Decision:
    return Decision(
        decision_id=decision_id,
        display_id="screen-1",
        zone="entrance",
        at_wall=at,
        shopper_id=shopper,
        offer_id="coffee-morning-2for1",
        template="offer-card",
        data={},
        model_version=version,
        propensity=0.9,
        explored=False,
        holdout=False,
        personalized=True,
        candidates=Candidates(("coffee-morning-2for1",), (True,), (0.7,), ("",)),
        features=features,
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


async def test_export_lists_what_the_ledger_holds_explains_each_offer_and_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "store", 1883)
    settings_ = store.settings()
    scorer = ModelStore.open(settings_.control.state_dir).start(
        REPO / "models/offers.onnx", REPO / "models/offers.json"
    )
    rng = np.random.default_rng(15)
    row = rng.uniform(0.0, 1.0, N_FEATURES).astype(np.float32)
    clock = ManualClock()
    t0 = clock.wall()
    async with Ledger(settings_.ledger.path, clock) as ledger:
        await ledger.set_consent(ConsentRow(SHOPPER, Purpose.PERSONALIZATION, True, t0 - 50, "cloud"))
        await ledger.set_consent(ConsentRow(SHOPPER, Purpose.MEASUREMENT, True, t0 - 50, "cloud"))
        await ledger.replica.apply_page(
            [
                Change(
                    1,
                    ChangeKind.PROFILE,
                    SHOPPER,
                    "upsert",
                    t0 - 40,
                    {"profile": {"visits": 3, "language": "pt"}},
                ),
                Change(2, ChangeKind.PROFILE, OTHER, "upsert", t0 - 40, {"profile": {"visits": 9}}),
            ],
            "c2",
        )
        await ledger.record_decision(
            _decision("d-1", t0 - 30, SHOPPER, row.tobytes(), scorer.version), keep_shopper=True
        )
        await ledger.record_decision(
            _decision("d-2", t0 - 20, OTHER, row.tobytes(), scorer.version), keep_shopper=True
        )
        await ledger.record_decision(
            _decision("d-3", t0 - 10, SHOPPER, row.tobytes(), "1999.1.1"), keep_shopper=True
        )
        for sale_id, who, sku in (("sale-1", SHOPPER, "SOCK-1"), ("sale-2", OTHER, "HAT-9")):
            line = SaleLine(sku, 2, 3.5, "sports")
            await ledger.record_conversion(
                Conversion(sale_id, t0 - 5, t0 - 4, "2", who, 7.0, "EUR", (line,)), None
            )

    config = str(store.config_path)
    assert (
        cli.main(["privacy", "export", "--config", config, "--shopper", SHOPPER, "--operator", "desk"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["shopper_id"] == SHOPPER and doc["erased_at"] is None
    assert {c["purpose"] for c in doc["consents"]} == {"personalization", "measurement"}
    assert doc["profile"]["fields"] == {"visits": 3, "language": "pt"}
    assert [d["decision_id"] for d in doc["decisions"]] == ["d-3", "d-1"]  # newest first, nobody else's
    assert OTHER not in json.dumps(doc)
    explained = doc["decisions"][1]
    assert explained["model_version"] == scorer.version and explained["offer"] is not None
    assert explained["deleted_by"] is not None
    # Each group's contribution, checked against the model run here directly
    session = ort.InferenceSession(str(REPO / "models/offers.onnx"), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    full = float(session.run(None, {name: row[np.newaxis, :]})[0].reshape(-1)[0])
    index = {n: i for i, n in enumerate(FEATURE_NAMES)}
    for entry in explained["why"]:
        names = next(names for key, _, names in GROUPS if key == entry["feature"])
        zeroed = row.copy()
        for n in names:
            zeroed[index[n]] = BASELINE.get(n, 0.0)
        without = float(session.run(None, {name: zeroed[np.newaxis, :]})[0].reshape(-1)[0])
        assert entry["logit"] == pytest.approx(_logit(full) - _logit(without), abs=1e-3)
    # A version no longer installed: listed, not explained
    assert doc["decisions"][0]["why"] is None
    assert doc["exports"] == []  # this export's own row is the first
    assert doc["purchases"] == [
        {
            "at": iso_utc(t0 - 5),
            "lane": "2",
            "total": 7.0,
            "currency": "EUR",
            "items": [{"sku": "SOCK-1", "category": "sports", "qty": 2, "price": 3.5}],
            "deleted_by": iso_utc(t0 - 4 + 90 * 86_400),
        }
    ]

    assert cli.main(["privacy", "export", "--config", config, "--shopper", SHOPPER, "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "Why did I see this offer?" in page and "What weighed most" in page
    assert "2 x SOCK-1" in page and "HAT-9" not in page
    with sqlite3.connect(settings_.ledger.path) as db:
        audit = db.execute("SELECT shopper_key, via, detail FROM privacy_audit ORDER BY id").fetchall()
    assert [row_[1] for row_ in audit] == ["cli", "cli"]
    assert json.loads(audit[0][2]) == {"format": "json", "operator": "desk"}
    assert all(SHOPPER not in str(row_) for row_ in audit)  # a keyed hash, never the id
    assert len({row_[0] for row_ in audit}) == 1


async def test_an_offer_title_is_text_on_the_page_and_an_erased_shopper_is_told_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "store", 1883)
    settings_ = store.settings()
    clock = ManualClock()
    async with Ledger(settings_.ledger.path, clock) as ledger:
        await ledger.replica.apply_page(
            [
                Change(
                    1,
                    ChangeKind.OFFER,
                    "evil",
                    "upsert",
                    clock.wall(),
                    {
                        "offer": {
                            "id": "evil",
                            "title": "<script>alert(1)</script>",
                            "category": "coffee",
                            "value": 1,
                        }
                    },
                )
            ],
            "c1",
        )
        decision = _decision("d-9", clock.wall(), SHOPPER, None, "m")
        await ledger.record_decision(
            Decision(**{**{f: getattr(decision, f) for f in Decision.__slots__}, "offer_id": "evil"}),
            keep_shopper=True,
        )
        config = str(store.config_path)
        assert (
            cli.main(["privacy", "export", "--config", config, "--shopper", SHOPPER, "--format", "html"]) == 0
        )
        page = capsys.readouterr().out
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page

        clock.advance(5)
        await ledger.forget_shopper(SHOPPER)
    assert cli.main(["privacy", "export", "--config", config, "--shopper", SHOPPER]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["erased_at"] is not None
    assert doc["decisions"] == [] and doc["consents"] == [] and doc["profile"] is None
    # The first export is still on record (keyed hash): the erased shopper's earlier request was answered
    assert [a["via"] for a in doc["exports"]] == ["cli"]


def test_a_missing_ledger_or_a_bad_id_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    config = str(store.config_path)
    assert cli.main(["privacy", "export", "--config", config, "--shopper", SHOPPER]) == 1
    assert "cannot read the ledger" in capsys.readouterr().err
    assert cli.main(["privacy", "export", "--config", config, "--shopper", "a\nb"]) == 2


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.text(max_size=300), max_size=400),
    st.lists(st.integers(), max_size=50),
    st.integers(min_value=4096, max_value=65536),
)
def test_export_parts_fit_a_push_and_join_back_into_the_document(
    decisions: list[str], small: list[int], limit: int
) -> None:
    from edge.flow.privacy import export_parts  # noqa: PLC0415 - the flow's own splitting

    doc = {
        "format": "x",
        "decisions": [{"offer": d} for d in decisions],
        "exposures": [{"offer": d} for d in decisions[:60]],
        "device_settings": [{"offer": d} for d in decisions[60:120]],
        "staff_interactions": [{"offer": d} for d in decisions[120:180]],
        "pickup_orders": [{"offer": d} for d in decisions[180:240]],
        "exports": small,
        "profile": None,
    }
    parts = export_parts("r-9", doc, max_bytes=limit)
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["parts"] == len(parts) and p["request_id"] == "r-9" for p in parts)
    for part in parts:
        text = json.dumps(part["export"], separators=(",", ":"), ensure_ascii=False)
        assert len(text.encode("utf-8", "surrogatepass")) <= limit
    joined: dict[str, object] = dict(parts[0]["export"])
    for part in parts[1:]:
        for key, items in part["export"].items():
            joined[key] = [*joined[key], *items]  # type: ignore[misc]
    assert joined == doc
