"""The gateway's side of the sync contract (docs/sync.md, docs/sync-openapi.yaml).

The names both sides share (``ChangeKind``, ``Op``, ``EventClass``) are the contract's, re-exported here;
``Change`` is one entry of a pulled page after the gateway validated it, and ``NEVER_DROPPED`` is the outbox's
rule at its byte bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from storecontract.sync import ChangeKind as ChangeKind  # noqa: PLC0414 - re-exported
from storecontract.sync import EventClass as EventClass  # noqa: PLC0414 - re-exported
from storecontract.sync import Op as Op  # noqa: PLC0414 - re-exported


@dataclass(slots=True, frozen=True)
class Change:
    """One validated change from the cloud, in ``seq`` order; ``data`` after validation holds, per kind, on upsert:

    - PROFILE: ``{"profile": dict}``
    - CONSENT: ``{"purpose": Purpose, "granted": bool, "at_wall": float, "source": str}`` (upsert only)
    - EID_KEY: ``{"identity_key": bytes (16), "rotation_exponent": int, "clock_offset_s": int}``
    - TOKEN_KEY: ``{"public_key_pem": str}`` (an Ed25519 public key)
    - OFFER: ``{"offer": dict}`` (one catalog offer, validated by the contract's ``Offer``)
    - INVENTORY: ``{"available": bool, "quantity": int | None}``
    - ERASURE: ``{}`` (upsert only; ``at_wall`` is when the shopper was erased)
    - ORDER: ``{"shopper_id": str, "reference": str, "counter": str, "ready_wall": float}`` (an online
      order ready for pickup at this store; only this store pulls it)
    - CAMPAIGN_EXPOSURE: ``{"shopper_id": str, "campaign_id": str, "at_wall": float, "skus": tuple[str, ...],
      "category": str | None}`` (an online campaign the shopper saw; sent only while ``measurement`` is granted)

    A delete carries ``{}``.
    """

    seq: int
    kind: ChangeKind
    id: str
    op: Op
    at_wall: float
    data: dict[str, Any]


# Telemetry is dropped first at the outbox's byte bound; these classes never are (the bound is exceeded, loudly).
NEVER_DROPPED: Final = frozenset({EventClass.CONVERSION, EventClass.PRIVACY})
