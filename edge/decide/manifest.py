"""The offer model's contract with this code, checked without onnxruntime or numpy.

The manifest (``models/<name>.json``), the model's input columns in order, and the sha256 of the bytes:
everything ``edge-gateway check-config`` verifies. ``scorer.py`` opens the session on the bytes read here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.decide.catalog import CATEGORIES

INPUT_NAME: Final = "features"
# Context columns first (one value broadcast to every row), then per-offer columns, then the one-hot block of
# the catalog's categories: the order the shipped model was trained on (scripts/build_model.py).
CONTEXT_NAMES: Final = (
    "hour_sin",
    "hour_cos",
    "weekend",
    "audience_log",
    "personalized",
    "visits_log",
    "weather_known",  # 1 with fresh weather; 0 (and the two below 0) when unknown or stale
    "temp_scaled",  # (temperature now, clamped to -20..40 C, - 15) / 10
    "precipitation",  # raining or snowing now, or forecast for the rest of today
)
OFFER_NAMES: Final = (
    "affinity",
    "basket_complement",  # best confidence of a basket rule from the basket's SKUs to this offer
    "trend_share",  # the offer's category's share of this store's sales over 7 days (unknown: 1/8)
    "offer_value_log",
    "offer_discount",
)
# The columns the context-free baseline of scripts/build_model.py is trained without (held at their neutral
# values): what issue 16 added to the decision.
DECISION_CONTEXT_NAMES: Final = (
    "weather_known",
    "temp_scaled",
    "precipitation",
    "basket_complement",
    "trend_share",
)
FEATURE_NAMES: Final[tuple[str, ...]] = (
    *CONTEXT_NAMES,
    *OFFER_NAMES,
    *(f"cat_{category}" for category in CATEGORIES),
)
N_FEATURES: Final = len(FEATURE_NAMES)


class ModelError(ValueError):
    """The model file or its manifest is missing, tampered with, or does not fit this code."""


class TrainedOn(BaseModel):
    """Provenance of the shipped weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(description="Seed of the synthetic data generator.")
    rows: int = Field(ge=1, description="Training rows (offer impressions).")
    holdout_auc: float = Field(ge=0, le=1, description="ROC AUC on the held-out synthetic rows.")
    # Optional so that an older manifest still parses and check_fit can say what does not fit.
    context_free_auc: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Held-out ROC AUC of the same network trained on the same rows without the decision "
        "context (weather, basket, trends held neutral).",
    )
    top_choice_conversion: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Mean true conversion probability of this model's top offer per held-out visit.",
    )
    context_free_top_choice_conversion: float | None = Field(
        default=None, ge=0, le=1, description="The same for the context-free model's top offer."
    )
    uplift: float | None = Field(
        default=None,
        description="top_choice_conversion - context_free_top_choice_conversion (absolute, per visit).",
    )
    basket_rules: int | None = Field(
        default=None, ge=0, description="Association rules shipped inside the .onnx file."
    )
    context_free_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of models/<name>.context-free.onnx, the baseline kept for the evaluation test.",
    )


class ModelManifest(BaseModel):
    """``models/<name>.json``: what the ONNX file is and how to feed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Model name; the file is models/<name>.onnx.")
    version: str = Field(min_length=1, description="Model version, logged with every decision.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the .onnx bytes (lower-case hex).")
    inputs: dict[str, list[str]] = Field(
        description="Input tensor name -> its feature names in column order."
    )
    output: str = Field(min_length=1, description="Output tensor: one score in [0, 1] per input row.")
    categories: list[str] = Field(description="Offer categories of the one-hot columns, in order.")
    trained_on: TrainedOn = Field(description="Where the weights came from.")


def parse_manifest(data: bytes, source: str | Path) -> ModelManifest:
    """A manifest from its JSON bytes (read once by the caller, who may keep them); ``source`` names it."""
    try:
        return ModelManifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in exc.errors(include_url=False)
        )
        raise ModelError(f"invalid model manifest {source}: {problems}") from exc


def read_model(onnx_path: str | Path, manifest_path: str | Path) -> tuple[bytes, bytes, ModelManifest]:
    """The model's bytes, its manifest's bytes and the parsed manifest, each read once; the sha256 of those
    very bytes checked against the manifest (so a file swapped after the check cannot be the one used)."""
    onnx_path, manifest_path = Path(onnx_path), Path(manifest_path)
    try:
        manifest_bytes = manifest_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model manifest {manifest_path}: {exc.strerror or exc}") from exc
    manifest = parse_manifest(manifest_bytes, manifest_path)
    try:
        blob = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {onnx_path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.sha256:
        raise ModelError(f"model {onnx_path} has sha256 {digest}, its manifest says {manifest.sha256}")
    return blob, manifest_bytes, manifest


def check_fit(manifest: ModelManifest) -> None:
    """Raise ``ModelError`` unless the manifest's inputs and categories are this code's features, in order."""
    expected_inputs = {INPUT_NAME: list(FEATURE_NAMES)}
    if manifest.inputs != expected_inputs:
        got = manifest.inputs.get(INPUT_NAME)
        if got is None or len(manifest.inputs) != 1:
            detail = f"inputs {json.dumps(sorted(manifest.inputs))}, expected only '{INPUT_NAME}'"
        else:
            missing = [name for name in FEATURE_NAMES if name not in got]
            unknown = [name for name in got if name not in FEATURE_NAMES]
            detail = (
                f"missing {missing}, unknown {unknown}"
                if missing or unknown
                else "the same names in another order"
            )
        raise ModelError(
            f"model {manifest.name} {manifest.version}: its inputs differ from this gateway's features "
            f"({detail}); install a model built for these {N_FEATURES} features by this version's "
            f"scripts/build_model.py (docs/models.md). Expected {json.dumps(expected_inputs)}"
        )
    if manifest.categories != list(CATEGORIES):
        raise ModelError(f"manifest categories {manifest.categories} differ from {list(CATEGORIES)}")


def verify_model(onnx_path: str | Path, manifest_path: str | Path) -> ModelManifest:
    """Everything about a model that holds without running it: its manifest, the sha256 of its bytes, and
    whether it takes this code's features. The graph itself is checked when a session opens it."""
    _, _, manifest = read_model(onnx_path, manifest_path)
    check_fit(manifest)
    return manifest
