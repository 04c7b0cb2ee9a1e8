"""The names of the sync API (docs/sync-openapi.yaml): what a pulled change is about, and the class of an event.

The cloud writes these names, the gateway reads them; tests/profilestore/test_openapi.py holds both to the
document's enums.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal


class ChangeKind(StrEnum):
    """What a pulled change is about (a change's ``kind``); each kind's ``data`` is in the OpenAPI document."""

    PROFILE = "profile"
    CONSENT = "consent"
    EID_KEY = "eid_key"
    TOKEN_KEY = "token_key"  # noqa: S105 - a change kind, not a secret
    OFFER = "offer"
    INVENTORY = "inventory"
    ERASURE = "erasure"
    ORDER = "order"  # an online order ready for pickup at the pulling store (only that store sees it)
    WEATHER = "weather"  # the pulling store's weather now and today's forecast (only that store sees it)
    # An online campaign a shopper saw (only while their `measurement` consent is granted; only the stores that
    # hold the shopper see it): a sale in the store is attributed to it (online -> store).
    CAMPAIGN_EXPOSURE = "campaign_exposure"


Op = Literal["upsert", "delete"]


class EventClass(IntEnum):
    """A pushed event's ``class``; the value is the gateway outbox's priority: a higher class is kept longer."""

    TELEMETRY = 0
    CONVERSION = 1
    PRIVACY = 2

    @property
    def wire(self) -> str:
        return self.name.lower()
