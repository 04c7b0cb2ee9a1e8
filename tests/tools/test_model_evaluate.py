"""``edge-gateway model evaluate``: a candidate against the running model on a real ledger, through the CLI.

The decisions come from the real engine, the sales from the ledger's own conversion writes, the rewards from
the report's attribution query (edge.ledger.measure.decision_rewards), the models from ONNX files on disk.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.clock import ManualClock, iso_utc
from edge.decide.catalog import Catalog
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import load_model
from edge.events import Decision
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.store import Ledger
from tests.measure.test_ope import (
    MEASURED,
    PERSONAL,
    RUNNING_B,
    RUNNING_W,
    START,
    TRUTH_B,
    TRUTH_W,
    context,
    policy,
)
from tests.support.ope import catalog, logistic_model

DAY = 86_400.0
DECISIONS = 600


def offers_toml(offers: Catalog) -> str:
    """The catalog as an offers file (``[[offers]]`` tables)."""
    parts = []
    for offer in offers.offers:
        body = offer.model_dump(mode="json", exclude_defaults=True)
        lines = ["[[offers]]"] + [f"{key} = {json.dumps(value)}" for key, value in body.items()]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_config(folder: Path) -> Path:
    (folder / "offers.toml").write_text(offers_toml(catalog()))
    config = folder / "gateway.toml"
    config.write_text(
        f"""
[store]
id = "store-ope"
[identity]
public_key_files = ["keys/token-public.pem"]
[decisions]
model = "models/running-1.onnx"
offers_file = "offers.toml"
[decisions.policy]
epsilon = {policy().epsilon}
holdout_percent = {policy().holdout_percent}
tz = "UTC"
[ledger]
path = "ledger.db"
[control]
state_dir = "state"
[[zones]]
id = "entrance"
name = "Entrance"
"""
    )
    return config


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A gateway's folder: its config, the running model, a candidate, and a ledger of a simulated week."""
    logistic_model(tmp_path / "models", RUNNING_W, RUNNING_B, "running-1")
    logistic_model(tmp_path / "candidates", TRUTH_W, TRUTH_B, "candidate-2")
    return write_config(tmp_path)


async def simulate(config: Path, seed: int = 1) -> tuple[list[Decision], int]:
    """Decisions of the running model, one shopper each (so a sale credits exactly one decision), and a sale
    of the shown offer's category for a third of those with an offer; returns them and the sales."""
    folder = config.parent
    running = load_model(folder / "models" / "running-1.onnx", folder / "models" / "running-1.json")
    rng = np.random.default_rng(seed)
    clock = ManualClock(wall=START)
    offers = catalog()
    engine = DecisionEngine(offers, running, policy(), clock, random.Random(seed))
    decisions = []
    for i in range(DECISIONS):
        clock.advance(float(rng.uniform(60, 900)))
        ctx = context(rng, clock, i, shopper=f"shopper-{i}" if i % 10 else None)
        decisions.append(engine.decide(ctx, PERSONAL if i % 3 else MEASURED))
    sales = 0
    async with Ledger(folder / "ledger.db", clock, outbox_max_bytes=None) as ledger:
        await ledger.record_decisions([(d, d.shopper_id is not None) for d in decisions])
        for d in decisions:
            if d.shopper_id is None or d.offer_id is None or rng.random() > 0.33:
                continue
            offer = offers.get(d.offer_id)
            assert offer is not None
            at = d.at_wall + float(rng.uniform(60, 3 * DAY))
            line = SaleLine(sku=f"sku-{offer.category}", qty=1.0, price=10.0, category=offer.category)
            sale = Conversion(f"sale-{d.decision_id}", at, at, "lane-1", d.shopper_id, 10.0, "EUR", (line,))
            assert await ledger.record_conversion(sale, None)
            sales += 1
    return decisions, sales


def evaluate(config: Path, candidate: Path, *extra: str) -> int:
    return main(
        [
            "model",
            "evaluate",
            "--config",
            str(config),
            "--candidate",
            str(candidate),
            "--since",
            iso_utc(START),
            "--until",
            iso_utc(START + 30 * DAY),
            *extra,
        ]
    )


async def test_prints_both_models_estimates_and_a_verdict(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decisions, sales = await simulate(store)
    before = hashlib.sha256((store.parent / "ledger.db").read_bytes()).hexdigest()
    assert evaluate(store, store.parent / "candidates" / "candidate-2.onnx") == 0
    out = capsys.readouterr().out
    identified = sum(d.shopper_id is not None for d in decisions)
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert lines["candidate"][1] == "candidate-2" and lines["running"][1] == "running-1"
    assert int(lines["candidate"][2]) == int(lines["running"][2]) == identified
    assert f"anonymous {len(decisions) - identified}" in out
    assert any(
        line.startswith("verdict: candidate ") and line.endswith("at 95 %") for line in out.splitlines()
    )
    # Read beside the gateway, never written.
    assert hashlib.sha256((store.parent / "ledger.db").read_bytes()).hexdigest() == before
    assert sales > 0


async def test_the_running_model_as_candidate_gives_the_observed_conversion_rate(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decisions, sales = await simulate(store, seed=2)
    assert evaluate(store, store.parent / "models" / "running-1.onnx") == 0
    out = capsys.readouterr().out
    identified = sum(d.shopper_id is not None for d in decisions)
    observed = f"{sales / identified:.4f}"
    for label in ("candidate", "running"):
        row = next(line for line in out.splitlines() if line.startswith(label))
        ips, snips = row.split()[4], row.split()[7]
        assert ips == snips == observed, row
    assert "verdict: candidate not distinguishable at 95 %" in out


async def test_bad_arguments_and_files_are_reported_not_raised(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await simulate(store)
    candidate = store.parent / "candidates" / "candidate-2.onnx"
    assert evaluate(store, candidate, "--since", "last tuesday") == 2
    assert "--since" in capsys.readouterr().err
    assert evaluate(store, store.parent / "nowhere.onnx") == 1
    assert "cannot read" in capsys.readouterr().err
    # Another model's manifest: its sha256 does not match the candidate's bytes.
    assert evaluate(store, candidate, "--manifest", str(store.parent / "models" / "running-1.json")) == 1
    assert "sha256" in capsys.readouterr().err
    (store.parent / "ledger.db").unlink()
    assert evaluate(store, candidate) == 1
    assert "cannot read the ledger" in capsys.readouterr().err
