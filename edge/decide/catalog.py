"""The offer catalog: what may be shown, where, when and to whom (validated TOML, ``[[offers]]`` tables)."""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Category = Literal["apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports"]
# Order matters: it is the order of the one-hot columns the shipped model was trained on.
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)


# Every day of the week, Monday = 0 as in datetime.weekday().
ALL_DAYS: Final = (0, 1, 2, 3, 4, 5, 6)
_END_OF_DAY: Final = "24:00"  # allowed as an end only: "until midnight"
_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # safe in topics, logs and SQL keys

Weekday = Annotated[int, Field(ge=0, le=6, description="Day of the week, Monday = 0.")]


class CatalogError(ValueError):
    """A catalog file that cannot be read or does not validate; ``errors`` has one line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid offer catalog {source}:\n  " + "\n  ".join(errors))


def _minutes(text: str, *, allow_end_of_day: bool) -> int:
    if allow_end_of_day and text == _END_OF_DAY:
        return 24 * 60
    hours, sep, minutes = text.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        msg = f"'{text}' is not HH:MM"
        raise ValueError(msg)
    hour, minute = int(hours), int(minutes)
    if hour > 23 or minute > 59:
        msg = f"'{text}' is not a time of day (00:00-23:59)"
        raise ValueError(msg)
    return hour * 60 + minute


class TimeWindow(BaseModel):
    """A daily time window in the store's local time; an end at or before the start runs past midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Weekday, ...] = Field(
        default=ALL_DAYS, description="Days the window opens on (0-6, Monday = 0); at least one."
    )
    start: str = Field(description="Local opening time, HH:MM.")
    end: str = Field(description="Local closing time, HH:MM (exclusive; 24:00 = midnight).")

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # Here rather than min_length, which would also fire when every listed day was out of range.
        if not value:
            msg = "a window needs at least one day"
            raise ValueError(msg)
        return tuple(sorted(set(value)))

    @field_validator("start")
    @classmethod
    def _start_ok(cls, value: str) -> str:
        _minutes(value, allow_end_of_day=False)
        return value

    @field_validator("end")
    @classmethod
    def _end_ok(cls, value: str) -> str:
        _minutes(value, allow_end_of_day=True)
        return value

    @property
    def start_minute(self) -> int:
        return _minutes(self.start, allow_end_of_day=False)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end, allow_end_of_day=True)


class Offer(BaseModel):
    """One offer and the rules for showing it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID_PATTERN, description="Stable offer id, logged with every decision.")
    title: str = Field(min_length=1, description="Human title for dashboards and staff.")
    template: str = Field(default="offer", min_length=1, description="Display template that renders it.")
    data: dict[str, Any] = Field(
        default_factory=dict, description="Free JSON handed to the display template."
    )
    category: Category = Field(description="Product category; one of the model's fixed categories.")
    value: float = Field(ge=0, allow_inf_nan=False, description="Business value of one conversion.")
    discount: float = Field(default=0.0, ge=0, le=1, description="Discount as a fraction (0.2 = 20% off).")
    zones: tuple[str, ...] = Field(default=(), description="Zones where it may be shown; empty = every zone.")
    windows: tuple[TimeWindow, ...] = Field(
        default=(), description="Local time windows when it may be shown; empty = always."
    )
    personal: bool = Field(
        default=False,
        description="Needs the shopper's personalization consent and a profile; never shown anonymously.",
    )
    daily_cap_per_shopper: int = Field(
        default=3, ge=1, description="Times one shopper may be chosen for it per local day."
    )
    display_cooldown_s: float = Field(
        default=300.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds before the same display shows it again.",
    )
    priority: int = Field(default=0, description="Tie-break between equal expected values; higher first.")
    active: bool = Field(default=True, description="Inactive offers stay in the catalog but are never shown.")


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
