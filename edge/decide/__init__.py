"""Offer decisions: catalog, features, the ONNX scorer and the policy that picks what a display shows."""

from edge.decide.catalog import Catalog, CatalogError, Offer, TimeWindow, load_catalog, parse_catalog
from edge.decide.features import CATEGORIES, FEATURE_NAMES, FeatureBuilder, build_features
from edge.decide.policy import (
    DecisionEngine,
    Fallback,
    FallbackSource,
    PolicySettings,
    holdout_bucket,
    is_holdout,
)
from edge.decide.record import DecisionIds
from edge.decide.scorer import ModelError, ModelManifest, OnnxScorer, Scorer, load_model

__all__ = [
    "CATEGORIES",
    "FEATURE_NAMES",
    "Catalog",
    "CatalogError",
    "DecisionEngine",
    "DecisionIds",
    "Fallback",
    "FallbackSource",
    "FeatureBuilder",
    "ModelError",
    "ModelManifest",
    "Offer",
    "OnnxScorer",
    "PolicySettings",
    "Scorer",
    "TimeWindow",
    "build_features",
    "holdout_bucket",
    "is_holdout",
    "load_catalog",
    "load_model",
    "parse_catalog",
]
