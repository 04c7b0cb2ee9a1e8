"""Basket rules ("bought running shoes, also bought socks"): learned offline by scripts/build_model.py.

The rules travel inside the model's ``.onnx`` file (metadata property ``basket_rules``, JSON), so the sha256
that pins the model (its manifest, ``[decisions] model_sha256``) pins its rules too: a model and the rules it
was trained with cannot be mixed up. ``scorer.load_model`` parses them; ``features.FeatureBuilder`` compiles
them against the catalog into one per-offer ``basket_complement`` column per basket SKU (docs/models.md).

Items are ``sku:<SKU>`` or ``cat:<category>``. A rule's antecedent is one item in the basket (a SKU, or the
category of a SKU the rules' ``skus`` table or the catalog's offers know); its consequent is what an offer
promotes (one of the offer's ``skus``, else its category). SKUs nobody knows contribute nothing.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.decide.catalog import CATEGORIES
from edge.decide.manifest import ModelError
from storecontract.offers import Category

RULES_KEY: Final = "basket_rules"  # the ONNX metadata property holding the rules' JSON
MAX_RULES: Final = 512  # bounded: compiled per catalog, looked up per basket SKU
MAX_SKUS: Final = 4096  # the rules' SKU -> category table
MAX_RULES_BYTES: Final = 1_000_000
SKU_PREFIX: Final = "sku:"
CATEGORY_PREFIX: Final = "cat:"

Sku = Annotated[str, Field(min_length=1, max_length=64)]
Item = Annotated[str, Field(pattern=r"^(sku:.{1,64}|cat:[a-z]{1,32})$")]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Rule(BaseModel):
    """``antecedent -> consequent`` with its support, confidence and lift over the training baskets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    antecedent: Item
    consequent: Item
    support: Unit = Field(description="Share of baskets holding both items.")
    confidence: Unit = Field(description="P(consequent | antecedent) over the baskets.")
    lift: float = Field(ge=0, allow_inf_nan=False, description="confidence / P(consequent).")


class BasketRules(BaseModel):
    """The rules a model was trained with, and the SKU -> category table they were mined over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    skus: dict[Sku, Category] = Field(default_factory=dict, max_length=MAX_SKUS)
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)

    @field_validator("rules")
    @classmethod
    def _categories_known(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        for rule in rules:
            for item in (rule.antecedent, rule.consequent):
                if item.startswith(CATEGORY_PREFIX) and item[len(CATEGORY_PREFIX) :] not in CATEGORIES:
                    msg = f"unknown category in rule item {item!r}"
                    raise ValueError(msg)
        return rules


EMPTY_RULES: Final = BasketRules()


def parse_rules(text: str | bytes | None, source: str) -> BasketRules:
    """The rules from their JSON; ``ModelError`` naming ``source`` if absent, too large or invalid."""
    if text is None:
        raise ModelError(f"model {source} carries no basket rules (metadata '{RULES_KEY}'); rebuild it")
    if len(text) > MAX_RULES_BYTES:
        raise ModelError(f"model {source} basket rules are {len(text)} bytes, more than {MAX_RULES_BYTES}")
    try:
        return BasketRules.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in exc.errors(include_url=False)[:5]
        )
        raise ModelError(f"model {source} has invalid basket rules: {problems}") from exc
