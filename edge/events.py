"""The typed events that flow between stages: frozen, slotted, no behaviour."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

# Consent purposes are the contract's (the cloud grants and withdraws them), re-exported for the stages.
from storecontract.purposes import Purpose as Purpose  # noqa: PLC0414 - re-exported


@dataclass(slots=True, frozen=True)
class CheckinReceived:
    """A verified check-in: a pseudonymous shopper is at a zone now."""

    shopper_id: str
    zone: str
    source: str  # "app" | "kiosk" | "qr"
    jti: str
    at_wall: float
    at_mono: float


@dataclass(slots=True, frozen=True)
class PresenceChanged:
    """A shopper entered, dwelt in, or left a zone (leave carries the zone they left)."""

    shopper_id: str
    zone: str
    kind: str  # "enter" | "dwell" | "leave"
    at_wall: float
    at_mono: float


@dataclass(slots=True, frozen=True)
class Advert:
    """One BLE advertisement as one scanner heard it; raw, before any parsing or identification.

    ``address`` never leaves the BLE source stage: unknown (random) addresses are not stored anywhere.
    """

    scanner: str  # "local:hci0" for the gateway's adapter, "espresense:<node>" for a remote node
    address: str
    rssi: int
    at_mono: float
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]  # keyed by the full 128-bit service UUID, lower case (as bleak gives it)
    tx_power: int | None = None


@dataclass(slots=True, frozen=True)
class Sighting:
    """An identified signal: a consenting shopper (or a store beacon) heard by a scanner at a strength."""

    identity: str  # the shopper's pseudonymous id, or "beacon:<key>" for a store beacon
    scanner: str
    rssi: int
    at_mono: float


@dataclass(slots=True, frozen=True)
class ZoneCount:
    """Anonymous counts for one zone; the only presence data that leaves the gateway."""

    zone: str
    people: int
    identified: int
    since_wall: float


@dataclass(slots=True, frozen=True)
class Weather:
    """The store's weather as a decision sees it; stale weather is no weather (None), never an old value."""

    temp_c: float  # now, degrees Celsius
    precipitation: bool  # raining or snowing now, or forecast for the rest of today
    forecast_max_c: float | None  # today's forecast maximum, if known
    observed_wall: float  # when it was measured or forecast (Unix seconds)
    source: str  # "cloud" | "sensor"


@dataclass(slots=True, frozen=True)
class DecisionContext:
    """Everything a decision may look at. ``profile`` is present only with personalization consent.

    ``basket`` (the SKUs the shopper holds: this visit's POS sale, an app cart) only for an identified
    shopper with personalization consent; ``weather`` and ``trends`` (this store's share of sales per
    category over the last 7 days) are the store's, for everyone.
    """

    display_id: str
    zone: str
    at_wall: float
    audience: int
    shopper_id: str | None = None
    profile: dict[str, Any] | None = None
    weather: Weather | None = None
    basket: tuple[str, ...] = ()
    trends: Mapping[str, float] | None = None


@dataclass(slots=True, frozen=True)
class Candidate:
    """One offer the model scored, with its eligibility and probability of being chosen."""

    offer_id: str
    eligible: bool
    score: float
    reason: str = ""  # why not eligible ("zone", "window", "consent", "cap", "cooldown")


@dataclass(slots=True, frozen=True)
class Candidates:
    """Every offer scored for one decision, as parallel columns.

    Columns, not one object per offer: a 50-offer decision builds four tuples instead of 50 frozen
    objects, which was a third of the decision's time. Iterating yields ``Candidate`` rows.
    """

    offer_ids: tuple[str, ...] = ()
    eligible: tuple[bool, ...] = ()
    scores: tuple[float, ...] = ()
    reasons: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.offer_ids)

    def __iter__(self) -> Iterator[Candidate]:
        return map(Candidate, self.offer_ids, self.eligible, self.scores, self.reasons)

    def __getitem__(self, index: int) -> Candidate:
        return Candidate(self.offer_ids[index], self.eligible[index], self.scores[index], self.reasons[index])


NO_CANDIDATES: Final = Candidates()


@dataclass(slots=True, frozen=True)
class Decision:
    """The outcome of one decision: what to show on which display, and why."""

    decision_id: str
    display_id: str
    zone: str
    at_wall: float
    shopper_id: str | None
    offer_id: str | None  # None: fallback
    template: str
    data: dict[str, Any]
    model_version: str
    propensity: float
    explored: bool
    holdout: bool
    personalized: bool
    candidates: Candidates = NO_CANDIDATES
    # The chosen offer's model input (float32 bytes) when a shopper was identified; what explains the choice.
    features: bytes | None = None
    # What the model saw apart from the catalog (edge/decide/logged.py), for every decision the policy made:
    # what an off-policy evaluation rebuilds every candidate's features from.
    context: bytes | None = None
    # A holdout decision: the offer the policy would have shown (same rule, same exploration draw), so the
    # report compares each offer's treated shoppers with the held-out ones it would have reached.
    counterfactual_offer_id: str | None = None
