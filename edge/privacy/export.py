"""The shopper's export: everything the store holds about them, as one JSON document (format 1).

Built from the ledger's rows (``edge/ledger/privacy.py``), what memory holds now (where they are, when the
running gateway builds it), the offer titles and the retention in force, so each kept item says when it will
be deleted. Pure: no I/O, times passed in. The wording for a shopper is ``page.py``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edge.clock import iso_utc
from edge.decide.logged import personal_parts
from edge.ledger.privacy import ShopperRows
from edge.privacy.explain import Explainer

FORMAT: Final = "edge-privacy-export/1"
_DAY: Final = 86_400.0

# What each consent purpose allows, in the shopper's words (docs/privacy.md).
PURPOSES: Final = {
    "presence_ble": "recognising your phone's beacon in the store",
    "camera_checkin": "checking in by showing your code to a camera",
    "personalization": "offers chosen for you",
    "clienteling": "staff told you are here and what you shared with them",
    "device_preferences": "fitting rooms and kiosks set to your preferences",
    "measurement": "keeping what you saw and bought linked to you, to measure offers",
}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of record is kept, in seconds (from the ledger's settings)."""

    decisions_s: float
    exposures_s: float
    device_settings_s: float
    staff_interactions_s: float
    profile_unseen_s: float | None = None
    conversions_s: float | None = None  # the POS sales kept for measurement (None: not said)
    campaign_exposures_s: float | None = None  # online campaigns seen, from the cloud (None: not said)


@dataclass(frozen=True, slots=True)
class Presence:
    """Where the shopper is now, in memory only (never written): zone, how it was learnt, since when."""

    zone: str
    source: str


@dataclass(frozen=True, slots=True)
class ExportContext:
    store_id: str
    generated_wall: float
    retention: Retention
    offer_titles: Mapping[str, str] = field(default_factory=dict)
    presence: Sequence[Presence] | None = None  # None: built outside the running gateway (a tool)
    presence_timeout_s: float | None = None


def _t(wall: float | None) -> str | None:
    return None if wall is None else iso_utc(wall)


def build_export(rows: ShopperRows, ctx: ExportContext, explainer: Explainer | None) -> dict[str, Any]:
    """The whole export as a JSON-ready dict."""
    keep = ctx.retention
    decisions = []
    for d in rows.decisions:
        why = None if explainer is None else explainer.explain(str(d["model_version"]), d["features"])
        decisions.append(
            {
                "decision_id": d["decision_id"],
                "at": _t(d["at_wall"]),
                "zone": d["zone"],
                "display_id": d["display_id"],
                "offer_id": d["offer_id"],
                "offer": ctx.offer_titles.get(str(d["offer_id"])) if d["offer_id"] else None,
                "template": d["template"],
                "model_version": d["model_version"],
                "personalized": d["personalized"],
                "explored": d["explored"],
                "holdout": d["holdout"],
                "propensity": round(float(d["propensity"]), 6),
                # What the decision's logged context says about the shopper (profile used, basket), if anything.
                "context": personal_parts(d.get("context")),
                "why": None
                if why is None
                else [{"feature": c.feature, "label": c.label, "logit": c.logit} for c in why],
                "deleted_by": _t(float(d["at_wall"]) + keep.decisions_s),
            }
        )
    return {
        "format": FORMAT,
        "store_id": ctx.store_id,
        "shopper_id": rows.shopper_id,
        "generated_at": _t(ctx.generated_wall),
        "erased_at": _t(rows.erased_wall),
        "last_seen_at": _t(rows.seen_wall),
        "retention_days": {
            "decisions": keep.decisions_s / _DAY,
            "exposures": keep.exposures_s / _DAY,
            "device_settings": keep.device_settings_s / _DAY,
            "staff_interactions": keep.staff_interactions_s / _DAY,
            "profile_unseen": None if keep.profile_unseen_s is None else keep.profile_unseen_s / _DAY,
            "purchases": None if keep.conversions_s is None else keep.conversions_s / _DAY,
            "campaign_exposures": None
            if keep.campaign_exposures_s is None
            else keep.campaign_exposures_s / _DAY,
        },
        "consents": [
            {
                "purpose": c["purpose"],
                "meaning": PURPOSES.get(str(c["purpose"]), ""),
                "granted": c["granted"],
                "at": _t(c["at_wall"]),
                "source": c["source"],
            }
            for c in rows.consents
        ],
        "profile": None
        if rows.profile is None
        else {
            "fields": rows.profile,
            "received_at": _t(rows.profile_at_wall),
            "deleted_when": "you have not been seen here for "
            f"{_days(keep.profile_unseen_s)}, or when you ask to be forgotten",
        },
        "beacon_key": None
        if rows.eid_key is None
        else {
            "held": True,
            "rotation_exponent": rows.eid_key["rotation_exponent"],
            "meaning": "a key that recognises the rotating identifier your phone broadcasts (presence_ble); "
            "the key itself is not shown: it is a credential of your phone",
        },
        "signals": _signals(ctx),
        "decisions": decisions,
        "exposures": [
            {
                "decision_id": e["decision_id"],
                "offer_id": e["offer_id"],
                "display_id": e["display_id"],
                "shown_at": _t(e["shown_at_wall"]),
                "deleted_by": _t(float(e["acked_at_wall"]) + keep.exposures_s),
            }
            for e in rows.exposures
        ],
        "device_settings": [
            {
                "device_id": s["device_id"],
                "at": _t(s["at_wall"]),
                "reason": s["reason"],
                "applied": _json(s["applied"]),
                "deleted_by": _t(float(s["at_wall"]) + keep.device_settings_s),
            }
            for s in rows.device_settings
        ],
        "staff_interactions": [
            {
                "action": s["action"],
                "team": s["team"],
                "zone": s["zone"],
                "at": _t(s["at_wall"]),
                "deleted_by": _t(float(s["at_wall"]) + keep.staff_interactions_s),
            }
            for s in rows.staff_interactions
        ],
        "pickup_orders": [
            {
                "order_id": o["order_id"],
                "reference": o["reference"],
                "counter": o["counter"],
                "ready_at": _t(o["ready_wall"]),
                "collected_at": _t(o["collected_wall"]),
            }
            for o in rows.pickup_orders
        ],
        # Sales kept here to measure offers (only with `measurement`), deleted by when the store heard them.
        "purchases": [
            {
                "at": _t(c["at_wall"]),
                "lane": c["lane"],
                "total": c["total"],
                "currency": c["currency"],
                "items": [{**item, "qty": _quantity(item["qty"])} for item in c["items"]],
                "deleted_by": None
                if keep.conversions_s is None
                else _t(float(c["received_wall"]) + keep.conversions_s),
            }
            for c in rows.conversions
        ],
        # Online campaigns the retailer says the shopper saw (only with `measurement`): a sale here may be
        # attributed to one (online -> store); deleted by when they saw it.
        "campaign_exposures": [
            {
                "campaign": x["campaign_id"],
                "at": _t(x["at_wall"]),
                "skus": json.loads(x["skus"]),
                "category": x["category"],
                "deleted_by": None
                if keep.campaign_exposures_s is None
                else _t(float(x["at_wall"]) + keep.campaign_exposures_s),
            }
            for x in rows.campaign_exposures
        ],
        "conversions": [
            {"at": _t(e["at_wall"]), "state": "waiting to be sent to the retailer"}
            for e in rows.queued_events
            if e["kind"] == "conversion"
        ],
        "sent_to_cloud": {
            "meaning": "events the store sends to the retailer's cloud are deleted here once the cloud has "
            "them; these still wait (or were refused by the cloud and are kept for the operator)",
            "waiting": [{"kind": e["kind"], "at": _t(e["at_wall"])} for e in rows.queued_events],
            "refused": [
                {"kind": e["kind"], "reason": e["reason"], "at": _t(e["at_wall"])}
                for e in rows.refused_events
            ],
        },
        "exports": [
            {"at": _t(a["at_wall"]), "via": a["via"], "request_id": a["request_id"]} for a in rows.exports
        ],
        "truncated": rows.truncated,
    }


def _quantity(qty: object) -> object:
    """A line's quantity as the till sent it: a whole number stays one (the ledger keeps it as REAL)."""
    return int(qty) if isinstance(qty, float) and qty.is_integer() else qty


def _days(seconds: float | None) -> str:
    return "a while" if seconds is None else f"{seconds / _DAY:g} days"


def _json(text: object) -> object:
    try:
        return json.loads(str(text))
    except ValueError:
        return text


def _signals(ctx: ExportContext) -> dict[str, Any]:
    note = (
        "Where you are in the store is held in memory only, never written to disk, and forgotten when you "
        "leave"
        + (
            ""
            if ctx.presence_timeout_s is None
            else f" (or after {ctx.presence_timeout_s / 60:g} minutes unseen)"
        )
        + ". A check-in keeps only its token's one-time id, without who you are, until the token expires."
    )
    if ctx.presence is None:
        return {"meaning": note, "now": None}
    return {
        "meaning": note,
        "now": [{"zone": p.zone, "source": p.source} for p in ctx.presence],
    }


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a kiosk shows (``my-data``): counts and choices, no values a passer-by should read, nobody else."""
    consents = doc.get("consents") or []
    return {
        "consents": [{"purpose": c["purpose"], "granted": c["granted"]} for c in consents],
        "profile_fields": sorted((doc.get("profile") or {}).get("fields", {}).keys()),
        "decisions": len(doc.get("decisions") or []),
        "offers_seen": len(doc.get("exposures") or []),
        "device_settings": len(doc.get("device_settings") or []),
        "staff_interactions": len(doc.get("staff_interactions") or []),
        "pickup_orders": len(doc.get("pickup_orders") or []),
        "purchases": len(doc.get("purchases") or []),
        "campaign_exposures": len(doc.get("campaign_exposures") or []),
        "waiting_for_cloud": len((doc.get("sent_to_cloud") or {}).get("waiting") or []),
        "beacon_key": doc.get("beacon_key") is not None,
        "retention_days": doc.get("retention_days"),
    }
