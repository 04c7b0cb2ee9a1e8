"""One catalog offer: what the cloud accepts (``PUT /admin/v1/offers/{id}``) is what a gateway can show.

The cloud validates an offer with this model before it becomes a change, and the gateway validates it again
when pulled (an older gateway may not know a newer field: it skips that offer, never fails).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The product categories; the gateway's model has one one-hot column per category, in this order.
Category = Literal["apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports"]
# Every day of the week, Monday = 0 as in datetime.weekday().
ALL_DAYS: Final = (0, 1, 2, 3, 4, 5, 6)
OFFER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # safe in topics, logs and SQL keys
_END_OF_DAY: Final = "24:00"  # allowed as an end only: "until midnight"

Weekday = Annotated[int, Field(ge=0, le=6, description="Day of the week, Monday = 0.")]


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

    id: str = Field(pattern=OFFER_ID_PATTERN, description="Stable offer id, logged with every decision.")
    title: str = Field(min_length=1, description="Human title for dashboards and staff.")
    template: str = Field(default="offer", min_length=1, description="Display template that renders it.")
    data: dict[str, Any] = Field(
        default_factory=dict, description="Free JSON handed to the display template."
    )
    category: Category = Field(description="Product category; one of the model's fixed categories.")
    skus: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        default=(),
        max_length=64,
        description=(
            "SKUs the offer promotes (POS sale lines match them for attribution; the model's basket rules"
            " look them up); empty = the whole category."
        ),
    )
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
