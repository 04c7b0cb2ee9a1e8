"""The offer model's lifecycle on real files and real onnxruntime sessions (edge/decide/lifecycle.py).

New models are built here with the ``onnx`` package: the shipped graph with other weights, and graphs that
must be refused (not ONNX at all, inputs that do not fit, NaN or out-of-range scores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog
from edge.decide.lifecycle import (
    HISTORY,
    INFO_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    POINTER,
    ModelRefusedError,
    ModelStore,
    probe_matrix,
)
from edge.decide.manifest import FEATURE_NAMES, ModelError
from edge.decide.policy import RECENT_DECISIONS, DecisionEngine
from edge.decide.scorer import Scorer
from tests.decide.conftest import MANIFEST, MODEL, PERSONAL, context, offer
from tests.support.onnxgraphs import gemm_model

F = len(FEATURE_NAMES)
SHIPPED = "2026.12.1"
CATEGORIES_USED = ("coffee", "grocery", "electronics", "apparel", "beauty", "kids")


# ----- models built for the tests -----
def retrained(w1: float = 1.0, w2: float = 1.0, b2: float = 1.0) -> bytes:
    """The shipped graph with its weights scaled (``w2=-1, b2=-1`` inverts every preference: p -> 1 - p)."""
    model = onnx.load(str(MODEL))
    scales = {"w1": w1, "w2": w2, "b2": b2}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in scales:
            array = numpy_helper.to_array(tensor) * np.float32(scales[tensor.name])
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, tensor.name))
    return bytes(model.SerializeToString())


def graph_model(
    width: int = F, input_name: str = "features", *, last: str = "Sigmoid", nan: bool = False
) -> bytes:
    """Gemm -> ``last`` (-> + NaN): small graphs that load but must be refused for what they are or do."""
    w = np.full((width, 1), 0.5, dtype=np.float32)
    return gemm_model(w, 3.0, input_name=input_name, last=last, nan=nan)


def write_model(folder: Path, blob: bytes, version: str, **manifest: Any) -> tuple[Path, Path]:
    """``blob`` and a manifest for it (the shipped one with this version and sha256, plus ``manifest``)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, manifest_path = folder / f"{version}.onnx", folder / f"{version}.json"
    onnx_path.write_bytes(blob)
    data = json.loads(MANIFEST.read_text())
    data.update(version=version, sha256=hashlib.sha256(blob).hexdigest(), **manifest)
    manifest_path.write_text(json.dumps(data))
    return onnx_path, manifest_path


# ----- fixtures -----
def catalog(*, equal_values: bool = False) -> Catalog:
    offers = [
        offer(
            f"o-{category}", category=category, value=5.0 if equal_values else 2.0 + 3 * i, discount=0.1 * i
        )
        for i, category in enumerate(CATEGORIES_USED)
    ]
    return Catalog(offers=tuple(offers))


def make_engine(scorer: Scorer, clock: ManualClock, *, equal_values: bool = False) -> DecisionEngine:
    policy = PolicySettings(epsilon=0.0, holdout_percent=0.0)
    return DecisionEngine(catalog(equal_values=equal_values), scorer, policy, clock, random.Random(3))


def traffic(engine: DecisionEngine, clock: ManualClock, n: int = 40) -> list[str]:
    """``n`` decisions for varied shoppers over the day; returns the model version of each."""
    versions = []
    for i in range(n):
        clock.advance(900.0)
        profile = {"affinity": {CATEGORIES_USED[i % 6]: (i % 5) / 4, "kids": 0.3}, "visits": i}
        ctx = context(clock, shopper=f"s{i}", profile=profile, audience=i % 7)
        versions.append(engine.decide(ctx, PERSONAL if i % 3 else frozenset()).model_version)
    return versions


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state: Path) -> ModelStore:
    return ModelStore.open(state)


@pytest.fixture
def running(store: ModelStore) -> Scorer:
    return store.start(MODEL, MANIFEST)


@pytest.fixture
def engine(running: Scorer, clock: ManualClock) -> DecisionEngine:
    engine = make_engine(running, clock)
    traffic(engine, clock)
    return engine


def installed(store: ModelStore) -> list[str]:
    return [model.version for model in store.versions()]


def assert_unchanged(store: ModelStore, engine: DecisionEngine, running: Scorer, versions: list[str]) -> None:
    assert engine.scorer is running
    assert store.current_version() == SHIPPED
    assert installed(store) == versions
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]


# ----- start-up and layout -----
def test_start_installs_the_configured_model_and_points_at_it(store: ModelStore, running: Scorer) -> None:
    assert running.version == SHIPPED
    assert store.current_version() == SHIPPED
    assert (store.root / POINTER).read_text() == f"{SHIPPED}\n"
    folder = store.root / SHIPPED
    assert (folder / MODEL_FILE).read_bytes() == MODEL.read_bytes()
    assert (folder / MANIFEST_FILE).read_bytes() == MANIFEST.read_bytes()
    info = json.loads((folder / INFO_FILE).read_text())
    assert info["source"] == str(MODEL)
    [model] = store.versions()
    assert (model.version, model.current, model.sha256) == (
        SHIPPED,
        True,
        hashlib.sha256(MODEL.read_bytes()).hexdigest(),
    )
    assert store.history() == [SHIPPED]
    history = json.loads((store.root / HISTORY).read_text())
    assert history["configured_sha256"] == model.sha256
    # Starting again with the same configuration changes nothing.
    assert store.start(MODEL, MANIFEST).version == SHIPPED
    assert installed(store) == [SHIPPED]


# ----- install, shadow comparison, activation -----
def test_an_identical_model_agrees_completely(
    store: ModelStore, engine: DecisionEngine, tmp_path: Path
) -> None:
    result = store.install(*write_model(tmp_path / "in", MODEL.read_bytes(), "2026.12.1-copy"), engine=engine)
    comparison = result.comparison
    assert not result.already_installed
    assert (comparison.candidate_version, comparison.running_version) == ("2026.12.1-copy", SHIPPED)
    assert comparison.decisions == comparison.compared == 40
    assert comparison.agreement == 1.0
    assert comparison.mean_abs_diff == 0.0
    assert comparison.max_abs_diff == 0.0
    # Epsilon 0, no holdout: every offer shown was the running model's top choice, hence the copy's too.
    assert comparison.shown == 40
    assert comparison.chosen_agreement == 1.0
    assert comparison.probe_rows == probe_matrix().shape[0]
    assert engine.model_version == SHIPPED  # installed, not activated


def test_a_retrained_model_is_compared_installed_and_swapped_in(
    store: ModelStore, engine: DecisionEngine, running: Scorer, clock: ManualClock, tmp_path: Path
) -> None:
    paths = write_model(tmp_path / "in", retrained(w1=1.3, w2=0.8), "2027.1.1")
    recent = engine.recent_decisions()
    result = store.install_and_activate(engine, *paths)
    assert result.install is not None
    comparison = result.install.comparison

    # The same numbers, computed here one decision at a time.
    new = result.scorer
    assert new is not None
    weight = np.array([1.0 + o.value for o in sorted(catalog().offers, key=lambda o: o.id)], dtype=np.float32)
    assert engine.offer_ids == tuple(sorted(o.id for o in catalog().offers))
    diffs, agree = [], []
    for features, eligible, chosen in recent:
        a, b = new.score(features), running.score(features)
        diffs.extend(np.abs(a.astype(np.float64) - b).tolist())
        mask = np.array(eligible)
        ev_a, ev_b = np.where(mask, a * weight, -np.inf), np.where(mask, b * weight, -np.inf)
        agree.append(int(ev_a.argmax()) == int(ev_b.argmax()))
        assert chosen == int(ev_b.argmax())  # what the running engine chose greedily
    assert comparison.decisions == len(recent) == 40
    assert comparison.agreement == pytest.approx(sum(agree) / len(agree))
    assert comparison.mean_abs_diff == pytest.approx(float(np.mean(diffs)))
    assert comparison.max_abs_diff == pytest.approx(max(diffs))
    assert comparison.mean_abs_diff is not None
    assert comparison.agreement is not None
    assert 0.0 < comparison.mean_abs_diff < 0.5
    assert 0.5 < comparison.agreement < 1.0  # a mild retraining: mostly the same choices, not all

    # Swapped: the engine decides with the new model; the pointer and history follow.
    assert (result.version, result.previous, result.swapped) == ("2027.1.1", SHIPPED, True)
    assert engine.scorer is new
    assert traffic(engine, clock, 5) == ["2027.1.1"] * 5
    assert store.current_version() == "2027.1.1"
    assert store.history() == [SHIPPED, "2027.1.1"]
    assert installed(store) == [SHIPPED, "2027.1.1"]
    assert store.rollback_target() == SHIPPED


def test_inverted_preferences_never_agree_and_a_gate_can_refuse_them(
    state: Path, running: Scorer, clock: ManualClock, tmp_path: Path
) -> None:
    engine = make_engine(running, clock, equal_values=True)  # equal values: top choice = top score
    traffic(engine, clock, 20)
    inverted = write_model(tmp_path / "in", retrained(w2=-1.0, b2=-1.0), "2027.1.9")
    report = ModelStore.open(state).install(*inverted, engine=engine).comparison
    assert report.agreement == 0.0
    assert report.chosen_agreement == 0.0
    gated = ModelStore.open(state, min_agreement=0.9)
    shutil.rmtree(gated.root / "2027.1.9")
    with pytest.raises(
        ModelRefusedError, match=r"agrees with 2026.12.1 on 0.0% of 20 recent decisions"
    ) as error:
        gated.install_and_activate(engine, *inverted)
    assert error.value.comparison is not None
    assert error.value.comparison.agreement == 0.0
    assert_unchanged(gated, engine, running, [SHIPPED])


def test_without_recent_decisions_the_probe_rows_still_check_the_model(
    store: ModelStore, running: Scorer, clock: ManualClock, tmp_path: Path
) -> None:
    engine = make_engine(running, clock)
    result = store.install(*write_model(tmp_path / "in", retrained(1.1), "2027.1.1"), engine=engine)
    assert (result.comparison.decisions, result.comparison.agreement, result.comparison.mean_abs_diff) == (
        0,
        None,
        None,
    )
    nan = write_model(tmp_path / "in", graph_model(nan=True), "2027.1.2")
    with pytest.raises(ModelRefusedError, match="probe rows"):
        store.install(*nan, engine=engine)


# ----- refusals: the running scorer stays -----
def test_a_wrong_sha256_is_refused(
    store: ModelStore, engine: DecisionEngine, running: Scorer, tmp_path: Path
) -> None:
    onnx_path, manifest_path = write_model(tmp_path / "in", retrained(1.2), "2027.1.1")
    good = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="the configuration expects " + "0" * 64):
        store.install_and_activate(engine, onnx_path, manifest_path, expected_sha256="0" * 64)
    assert_unchanged(store, engine, running, [SHIPPED])
    with pytest.raises(ModelError, match="not 64 hex digits"):
        store.install_and_activate(engine, onnx_path, manifest_path, expected_sha256="abc")
    blob = bytearray(onnx_path.read_bytes())
    blob[-5] ^= 0x01  # one bit of the weights, after the manifest was written
    onnx_path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="its manifest says " + good):
        store.install_and_activate(engine, onnx_path, manifest_path, expected_sha256=good)
    assert_unchanged(store, engine, running, [SHIPPED])
    # Upper-case hex from a config push is the same hash.
    onnx_path, manifest_path = write_model(tmp_path / "in", retrained(1.2), "2027.1.1")
    result = store.install_and_activate(engine, onnx_path, manifest_path, expected_sha256=good.upper())
    assert result.version == engine.model_version == "2027.1.1"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"these bytes are not an ONNX model", "onnxruntime cannot load"),
        (graph_model(width=F + 1), rf"expected float \[N, {F}\]"),
        (graph_model(input_name="x"), "inputs"),
    ],
    ids=["not-onnx", "wrong-width", "wrong-input-name"],
)
def test_a_graph_that_does_not_load_or_fit_is_refused(
    store: ModelStore, engine: DecisionEngine, running: Scorer, tmp_path: Path, blob: bytes, message: str
) -> None:
    paths = write_model(tmp_path / "in", blob, "2027.1.1")
    with pytest.raises(ModelError, match=message):
        store.install_and_activate(engine, *paths)
    assert_unchanged(store, engine, running, [SHIPPED])


def test_a_manifest_that_does_not_fit_is_refused(
    store: ModelStore, engine: DecisionEngine, running: Scorer, tmp_path: Path
) -> None:
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    paths = write_model(tmp_path / "in", retrained(1.2), "2027.1.1", inputs={"features": swapped})
    with pytest.raises(ModelError, match="differ from this gateway's features"):
        store.install_and_activate(engine, *paths)
    for version in ("../escape", "current", ""):
        with pytest.raises(ModelError, match="version"):
            store.install_and_activate(engine, *write_model(tmp_path / "v", retrained(1.2), version))
    assert_unchanged(store, engine, running, [SHIPPED])


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (graph_model(nan=True), r"non-finite scores \(NaN or inf\)"),
        (graph_model(last="Relu"), r"outside \[0, 1\]"),
    ],
    ids=["nan", "not-a-probability"],
)
def test_a_model_producing_nan_or_non_probabilities_is_refused_in_shadow(
    store: ModelStore, engine: DecisionEngine, running: Scorer, tmp_path: Path, blob: bytes, message: str
) -> None:
    with pytest.raises(ModelRefusedError, match=message):
        store.install_and_activate(engine, *write_model(tmp_path / "in", blob, "2027.1.1"))
    assert_unchanged(store, engine, running, [SHIPPED])


def test_a_version_is_immutable(
    store: ModelStore, engine: DecisionEngine, running: Scorer, tmp_path: Path
) -> None:
    first = write_model(tmp_path / "a", retrained(1.2), "2027.1.1")
    assert not store.install(*first, engine=engine).already_installed
    assert store.install(*first, engine=engine).already_installed  # the same bytes again: nothing to copy
    with pytest.raises(ModelError, match="already installed with sha256"):
        store.install(*write_model(tmp_path / "b", retrained(1.4), "2027.1.1"), engine=engine)
    assert engine.scorer is running


# ----- keeping three, rollback -----
def test_the_last_three_are_kept(store: ModelStore, engine: DecisionEngine, tmp_path: Path) -> None:
    pruned = []
    for i in (1, 2, 3, 4):
        result = store.install_and_activate(
            engine, *write_model(tmp_path / "in", retrained(1 + i / 10), f"2027.1.{i}")
        )
        pruned.append(result.pruned)
    assert pruned == [(), (), (SHIPPED,), ("2027.1.1",)]
    assert installed(store) == ["2027.1.2", "2027.1.3", "2027.1.4"]
    assert store.history() == ["2027.1.2", "2027.1.3", "2027.1.4"]
    # Activating a kept version again moves it to the top; nothing else is lost.
    assert store.activate("2027.1.2", engine).pruned == ()
    assert store.history() == ["2027.1.3", "2027.1.4", "2027.1.2"]
    assert engine.model_version == "2027.1.2"
    # A version installed but never activated is pruned at the next activation.
    store.install(*write_model(tmp_path / "in", retrained(2.0), "2027.1.9"))
    assert "2027.1.9" in installed(store)
    assert store.activate("2027.1.4", engine).pruned == ("2027.1.9",)


def test_rollback_restores_the_previous_model(
    store: ModelStore, engine: DecisionEngine, running: Scorer, clock: ManualClock, tmp_path: Path
) -> None:
    store.install_and_activate(engine, *write_model(tmp_path / "in", retrained(1.3), "2027.1.1"))
    new = engine.scorer
    result = store.rollback(engine)
    assert (result.version, result.previous, result.swapped) == (SHIPPED, "2027.1.1", True)
    assert engine.model_version == SHIPPED
    assert engine.scorer is not running  # loaded and checked again from the store
    assert traffic(engine, clock, 3) == [SHIPPED] * 3
    clock.advance(60)
    ctx = context(clock, profile={"affinity": {"coffee": 0.9}, "visits": 4})
    expected = running.score(engine.recent_decisions()[-1][0])
    assert np.allclose(engine.scorer.score(engine.recent_decisions()[-1][0]), expected)
    assert engine.decide(ctx, PERSONAL).model_version == SHIPPED
    assert store.current_version() == SHIPPED
    assert store.history() == [SHIPPED]
    assert "2027.1.1" in installed(store)  # kept: a push may bring it back
    with pytest.raises(ModelError, match="nothing to roll back to"):
        store.rollback(engine)
    assert engine.model_version == SHIPPED
    assert new is not engine.scorer


def test_rollback_to_a_damaged_copy_changes_nothing(
    store: ModelStore, engine: DecisionEngine, tmp_path: Path
) -> None:
    store.install_and_activate(engine, *write_model(tmp_path / "in", retrained(1.3), "2027.1.1"))
    new = engine.scorer
    (store.root / SHIPPED / MODEL_FILE).write_bytes(b"bit rot")
    with pytest.raises(ModelError, match="sha256"):
        store.rollback(engine)
    assert engine.scorer is new
    assert store.current_version() == "2027.1.1"
    assert store.history() == [SHIPPED, "2027.1.1"]


# ----- crashes and restarts -----
def test_a_crash_mid_install_is_cleaned_and_ignored(
    state: Path, store: ModelStore, running: Scorer, tmp_path: Path
) -> None:
    half = store.root / ".tmp-2027.1.1-0badc0de"
    half.mkdir()
    (half / MODEL_FILE).write_bytes(retrained(1.3)[:100])  # cut short by the crash
    (store.root / ".tmp-current-1234abcd").write_text("2027.1.1")  # a pointer write that never landed
    assert installed(store) == [SHIPPED]  # ignored while it is there
    reopened = ModelStore.open(state)
    assert sorted(p.name for p in reopened.root.iterdir()) == sorted([".lock", HISTORY, POINTER, SHIPPED])
    assert reopened.current_version() == SHIPPED
    result = reopened.install(*write_model(tmp_path / "in", retrained(1.3), "2027.1.1"))
    assert not result.already_installed


def test_a_crash_between_history_and_pointer_leaves_the_pointer_in_charge(
    state: Path, store: ModelStore, running: Scorer, tmp_path: Path
) -> None:
    store.install(*write_model(tmp_path / "in", retrained(1.3), "2027.1.1"))
    # The history was written for an activation whose pointer write never happened: one step ahead.
    (store.root / HISTORY).write_text(json.dumps({"stack": [SHIPPED, "2027.1.1"], "configured_sha256": None}))
    assert store.history() == [SHIPPED]
    assert store.rollback_target() is None
    store.activate("2027.1.1")
    # A rollback whose pointer write never happened: the history dropped the version the pointer names.
    (store.root / HISTORY).write_text(json.dumps({"stack": [SHIPPED], "configured_sha256": None}))
    assert store.history() == [SHIPPED, "2027.1.1"]
    assert store.rollback_target() == SHIPPED
    (store.root / HISTORY).write_text("{torn")
    assert store.history() == ["2027.1.1"]
    loaded = ModelStore.open(state).load_current()
    assert loaded is not None
    assert loaded.version == "2027.1.1"


def test_restart_rules_pointer_versus_configured_model(
    state: Path, clock: ManualClock, tmp_path: Path
) -> None:
    store = ModelStore.open(state)
    engine = make_engine(store.start(MODEL, MANIFEST), clock)
    # A push: the configuration now names the new model, which is installed and activated.
    pushed = write_model(tmp_path / "in", retrained(1.3), "2027.1.1")
    store.install_and_activate(engine, *pushed)
    assert ModelStore.open(state).start(*pushed).version == "2027.1.1"
    # The operator rolls back; restarts with the same configuration keep what they rolled back to.
    store.rollback(engine)
    assert ModelStore.open(state).start(*pushed).version == SHIPPED
    assert ModelStore.open(state).start(*pushed).version == SHIPPED
    # A configuration edited to name a new model (another sha256) wins once, at the next start...
    edited = write_model(tmp_path / "cfg", retrained(1.5), "2027.9.1")
    assert ModelStore.open(state).start(*edited).version == "2027.9.1"
    assert store.history() == [SHIPPED, "2027.9.1"]
    store.rollback()
    assert ModelStore.open(state).start(*edited).version == SHIPPED
    # ...and so does an edit back to a model the store already holds.
    assert ModelStore.open(state).start(*pushed).version == "2027.1.1"
    assert store.history() == [SHIPPED, "2027.1.1"]


def test_start_falls_back_to_the_configured_model_when_the_current_copy_is_damaged(
    state: Path, clock: ManualClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore.open(state)
    engine = make_engine(store.start(MODEL, MANIFEST), clock)
    pushed = write_model(tmp_path / "in", retrained(1.3), "2027.1.1")
    store.install_and_activate(engine, *pushed)
    store.rollback(engine)
    (store.root / SHIPPED / MODEL_FILE).write_bytes(b"bit rot")
    # The pointer names the damaged copy: the configured model runs, loaded from its own path.
    scorer = ModelStore.open(state).start(*pushed)
    assert scorer.version == "2027.1.1"
    assert f"current model {SHIPPED} cannot be loaded" in caplog.text
    assert store.current_version() == SHIPPED  # the pointer stays: an operator decides
    with pytest.raises(ModelError, match="sha256"):
        ModelStore.open(state).load_current()
    # A configured model that is itself unusable with no pointer to fall back on: the daemon cannot start.
    empty = ModelStore.open(tmp_path / "other")
    broken = write_model(tmp_path / "cfg", graph_model(nan=True), "2027.9.1")
    with pytest.raises(ModelRefusedError, match="non-finite"):
        empty.start(*broken)
    assert empty.current_version() is None


def test_reload_pointer_runs_what_another_process_pointed_at(
    state: Path, store: ModelStore, engine: DecisionEngine, tmp_path: Path
) -> None:
    store.install_and_activate(engine, *write_model(tmp_path / "in", retrained(1.3), "2027.1.1"))
    assert store.reload_pointer(engine) is None  # already running it
    ModelStore.open(state).rollback()  # the CLI, on its own store object
    assert engine.model_version == "2027.1.1"
    result = store.reload_pointer(engine)
    assert result is not None
    assert (result.version, result.previous) == (SHIPPED, "2027.1.1")
    assert engine.model_version == SHIPPED
    assert store.reload_pointer(engine) is None


# ----- the engine's side -----
def test_the_recent_ring_is_bounded_and_records_the_choice(running: Scorer, clock: ManualClock) -> None:
    engine = make_engine(running, clock)
    traffic(engine, clock, RECENT_DECISIONS + 25)
    recent = engine.recent_decisions()
    assert len(recent) == RECENT_DECISIONS
    clock.advance(60)
    decision = engine.decide(context(clock, profile={"affinity": {"kids": 1.0}}), PERSONAL)
    features, eligible, chosen = engine.recent_decisions()[-1]
    assert features.shape == (len(engine.offer_ids), F)
    assert not features.flags.writeable
    assert len(eligible) == len(engine.offer_ids)
    assert engine.offer_ids[chosen] == decision.offer_id
    assert len(engine.recent_decisions()) == RECENT_DECISIONS
    # Held-out shoppers get the fallback: recorded with no choice.
    holdout = DecisionEngine(
        catalog(), running, PolicySettings(epsilon=0.0, holdout_percent=50.0), clock, random.Random(1)
    )
    for i in range(20):
        decision = holdout.decide(context(clock, shopper=f"h{i}"), PERSONAL)
        assert (holdout.recent_decisions()[-1][2] == -1) == decision.holdout


def test_decisions_on_another_thread_switch_models_cleanly(
    store: ModelStore, engine: DecisionEngine, clock: ManualClock, tmp_path: Path
) -> None:
    """A swap from another thread lands between two decisions: never a mix, never back."""
    paths = write_model(tmp_path / "in", retrained(1.3), "2027.1.1")
    versions: list[str] = []
    swapped = threading.Event()
    base = context(clock)

    def decide_loop() -> None:
        i = after_swap = 0
        while after_swap < 20:
            i += 1
            ctx = dataclasses.replace(base, at_wall=base.at_wall + i, shopper_id=f"t{i % 50}")
            versions.append(engine.decide(ctx, PERSONAL).model_version)
            after_swap += swapped.is_set()

    worker = threading.Thread(target=decide_loop)
    worker.start()
    store.install_and_activate(engine, *paths)
    swapped.set()
    worker.join()
    first_new = versions.index("2027.1.1")
    assert set(versions[:first_new]) <= {SHIPPED}
    assert set(versions[first_new:]) == {"2027.1.1"}
