"""The ``[decisions]`` section: the offer model and its pin, the catalog file, and the policy's settings."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.config.base import Section as _Section


class PolicySettings(BaseModel):
    """Exploration, holdout and the store's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(
        default=0.05, ge=0, le=1, description="Share of decisions that pick uniformly among eligible offers."
    )
    holdout_percent: float = Field(
        default=5.0,
        ge=0,
        le=50,
        description="Identified shoppers kept on the fallback as a control group (%).",
    )
    holdout_salt: str = Field(
        default="edge-holdout-v1", min_length=1, description="Salt of the holdout hash; change it to redraw."
    )
    tz: str = Field(
        default="UTC", description="Store time zone (IANA name) for offer windows and daily caps."
    )

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone '{value}'"
            raise ValueError(msg) from exc
        return value


class DecisionSettings(_Section):
    model: Path = Field(default=Path("models/offers.onnx"), description="ONNX offer model.")
    manifest: Path | None = Field(
        default=None, description="Model manifest; defaults to the model path with a .json suffix."
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Pin: the model file's sha256 must also equal this (a signed config push sets it, so a "
        "file swapped on disk next to its manifest is refused).",
    )
    offers_file: Path = Field(
        default=Path("config/offers.example.toml"), description="Offer catalog (TOML, [[offers]] tables)."
    )
    policy: PolicySettings = Field(default_factory=PolicySettings, description="Exploration and holdout.")

    @property
    def manifest_path(self) -> Path:
        return self.manifest if self.manifest is not None else self.model.with_suffix(".json")
