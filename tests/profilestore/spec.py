"""docs/sync-openapi.yaml loaded once, and answers checked against its component schemas."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "sync-openapi.yaml"


@functools.cache
def spec_text() -> str:
    return SPEC_PATH.read_text(encoding="utf-8")


@functools.cache
def spec() -> dict[str, Any]:
    return dict(yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8")))


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec()["components"]})


def check(name: str, document: Any) -> Any:
    """``document`` if it matches the spec's schema ``name``; else AssertionError listing the problems."""
    errors = sorted(_validator(name).iter_errors(document), key=lambda error: list(error.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(error.path)}: {error.message}" for error in errors[:5])
    return document
