"""The typed shapes of the cloud sync contract (docs/sync.md, docs/sync-openapi.yaml).

`Change` is one entry of a pulled page after validation (`data` normalised per kind, see `ChangeKind`);
`EventClass` orders what the outbox keeps when its byte bound is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final, Literal


class ChangeKind(StrEnum):
    """What a pulled change is about; ``data`` after validation holds, per kind, on upsert:

    - PROFILE: ``{"profile": dict}``
    - CONSENT: ``{"purpose": Purpose, "granted": bool, "at_wall": float, "source": str}`` (upsert only)
    - EID_KEY: ``{"identity_key": bytes (16), "rotation_exponent": int, "clock_offset_s": int}``
    - TOKEN_KEY: ``{"public_key_pem": str}`` (an Ed25519 public key)
    - OFFER: ``{"offer": dict}`` (one catalog offer, validated by the catalog's model)
    - INVENTORY: ``{"available": bool, "quantity": int | None}``
    - ERASURE: ``{}`` (upsert only; ``Change.at_wall`` is when the shopper was erased)

    A delete carries ``{}``.
    """

    PROFILE = "profile"
    CONSENT = "consent"
    EID_KEY = "eid_key"
    TOKEN_KEY = "token_key"  # noqa: S105 - a change kind, not a secret
    OFFER = "offer"
    INVENTORY = "inventory"
    ERASURE = "erasure"


Op = Literal["upsert", "delete"]


@dataclass(slots=True, frozen=True)
class Change:
    """One validated change from the cloud, in ``seq`` order."""

    seq: int
    kind: ChangeKind
    id: str
    op: Op
    at_wall: float
    data: dict[str, Any]


class EventClass(IntEnum):
    """Outbox priority: a higher class is kept longer; telemetry is dropped first, the others never."""

    TELEMETRY = 0
    CONVERSION = 1
    PRIVACY = 2

    @property
    def wire(self) -> str:
        return self.name.lower()


NEVER_DROPPED: Final = frozenset({EventClass.CONVERSION, EventClass.PRIVACY})
