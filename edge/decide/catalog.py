"""The offer catalog: what may be shown, where, when and to whom (validated TOML, ``[[offers]]`` tables)."""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# One offer is the contract with the cloud (it validates offers with the same model); the catalog is ours.
from storecontract.offers import Category as Category  # noqa: PLC0414 - re-exported
from storecontract.offers import Offer as Offer  # noqa: PLC0414 - re-exported
from storecontract.offers import TimeWindow as TimeWindow  # noqa: PLC0414 - re-exported

# Order matters: it is the order of the one-hot columns the shipped model was trained on (the contract's).
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)


class CatalogError(ValueError):
    """A catalog file that cannot be read or does not validate; ``errors`` has one line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid offer catalog {source}:\n  " + "\n  ".join(errors))


class Catalog(BaseModel):
    """Every offer the store knows, active or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offers: tuple[Offer, ...] = Field(description="The offers, at least one; ids are unique.")

    @field_validator("offers")
    @classmethod
    def _unique_ids(cls, offers: tuple[Offer, ...]) -> tuple[Offer, ...]:
        # Checked here rather than with min_length, which would also fire when every offer failed.
        if not offers:
            msg = "a catalog needs at least one offer"
            raise ValueError(msg)
        counts = Counter(offer.id for offer in offers)
        duplicates = sorted(offer_id for offer_id, count in counts.items() if count > 1)
        if duplicates:
            msg = f"duplicate offer ids: {', '.join(duplicates)}"
            raise ValueError(msg)
        return offers

    def get(self, offer_id: str) -> Offer | None:
        return next((offer for offer in self.offers if offer.id == offer_id), None)


def merged_catalog(
    base: Catalog, cloud_offers: Mapping[str, Mapping[str, Any]], unavailable: Iterable[str]
) -> Catalog:
    """The file catalog with the cloud's offers over it (same id: the cloud's wins) and unavailable ones off.

    A cloud offer that no longer validates (a newer cloud, an older gateway) is skipped, never fatal.
    """
    offers = {offer.id: offer for offer in base.offers}
    for offer_id, body in cloud_offers.items():
        try:
            offers[offer_id] = Offer.model_validate(body)
        except ValidationError:
            continue
    off = set(unavailable)
    return Catalog(
        offers=tuple(
            offer.model_copy(update={"active": False}) if offer.id in off and offer.active else offer
            for offer in offers.values()
        )
    )


def format_errors(error: ValidationError) -> list[str]:
    """pydantic errors as ``key.path: message`` lines (list indexes included: ``offers.3.value``)."""
    lines = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{path}: {item['msg']}")
    return lines


def parse_catalog(data: Any, source: str = "<data>") -> Catalog:
    """Validate already-parsed data (e.g. pushed by the cloud) into a Catalog or raise CatalogError."""
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(source, format_errors(exc)) from exc


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a TOML catalog file; every problem is reported with its key path."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise CatalogError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_catalog(data, str(path))
