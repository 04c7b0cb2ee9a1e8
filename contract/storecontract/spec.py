"""The sync contract's OpenAPI document itself (``sync-openapi.yaml``, package data; docs/sync-openapi.yaml
links to it): what the reference server serves at ``/openapi.yaml``, the one authority both sides test against."""

from __future__ import annotations

from importlib import resources
from typing import Final

SPEC_FILE: Final = "sync-openapi.yaml"


def openapi_text() -> str:
    """The document as shipped with this version of the contract."""
    return resources.files("storecontract").joinpath(SPEC_FILE).read_text(encoding="utf-8")
