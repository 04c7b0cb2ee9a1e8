"""The store dashboard's snapshot: one JSON document built from the running gateway's state objects by an
explicit allow-list of fields (docs/dashboard.md).

Nothing is copied wholesale from a part that knows shoppers: zones give numbers, screens give the offer and
template they show (never who, never the manifest's data: a kiosk's ``my-data`` content is a shopper's own),
decisions are reduced to anonymous rows the moment they are made (``RecentDecisions`` never holds a
``Decision``), and health is the ``gateway/health`` payload every subscriber of the broker already reads.
Pure: no I/O; the HTTP side is edge/control/dashboard.py.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.clock import iso_utc
from edge.control import health_json

if TYPE_CHECKING:
    from edge.daemon import Gateway
    from edge.events import Decision

JSON = dict[str, Any]
SNAPSHOT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One decision as the dashboard shows it: what was chosen where and how, never for whom."""

    at_wall: float
    display: str
    zone: str
    offer_id: str | None
    template: str
    model_version: str
    holdout: bool
    explored: bool


class RecentDecisions:
    """The last ``size`` decisions as anonymous rows; a decision observer (runs on the event loop)."""

    __slots__ = ("_rows", "seen")

    def __init__(self, size: int) -> None:
        self._rows: deque[DecisionRow] = deque(maxlen=size)
        self.seen = 0  # decisions observed since start: a cheap "something changed" mark for the stream

    def observe(self, decision: Decision) -> None:
        self._rows.append(
            DecisionRow(
                at_wall=decision.at_wall,
                display=decision.display_id,
                zone=decision.zone,
                offer_id=decision.offer_id,
                template=decision.template,
                model_version=decision.model_version,
                holdout=decision.holdout,
                explored=decision.explored,
            )
        )
        self.seen += 1

    def rows(self) -> list[DecisionRow]:
        """Newest first."""
        return list(reversed(self._rows))


def snapshot(gateway: Gateway, recent: RecentDecisions) -> JSON:
    """The dashboard's document for the running gateway; ``{"v": 1, "starting": true}`` between generations."""
    generation = gateway.generation
    if generation is None:
        return {"v": SNAPSHOT_VERSION, "starting": True}
    report = gateway.health()
    health = health_json.health_json(report)
    catalog = generation.decider.engine.catalog

    def title(offer_id: str | None) -> str | None:
        offer = catalog.get(offer_id) if offer_id is not None else None
        return offer.title if offer is not None else None

    counts = generation.floor.counts
    names = {zone.id: zone.name for zone in generation.settings.zones}
    zones = []
    for zone in counts.zones:
        people, identified, dwell = counts.audience(zone)
        zones.append(
            {
                "id": zone,
                "name": names.get(zone, ""),
                "people": people,
                "identified": identified,
                "dwell_s": None if dwell is None else round(dwell, 1),
            }
        )
    board = generation.board
    shown = report.displays
    screens = []
    for display in generation.settings.displays:
        template, fallback, expires_wall = board.showing(display.id)
        state = shown[display.id]
        screens.append(
            {
                "id": display.id,
                "zone": display.zone,
                "template": template,
                "fallback": fallback,
                "offer_id": state.offer_id,
                "title": title(state.offer_id),
                "version": state.version,
                "expires_at": None if expires_wall is None else iso_utc(expires_wall),
                "online": state.online,
                "pending": state.pending,
            }
        )
    devices = []
    if report.devices is not None:
        for device in report.devices.devices:
            devices.append(
                {
                    "id": device.id,
                    "zone": device.zone,
                    "kind": device.kind,
                    "adapter": device.adapter,
                    "available": device.plan.available,
                    "personal": device.plan.personal,
                    "mismatched": device.plan.mismatched,
                    "override_left_s": device.override_left_s,
                    "values": {str(key): value for key, value in device.values.items()},
                }
            )
    decisions = [
        {
            "at": iso_utc(row.at_wall),
            "display": row.display,
            "zone": row.zone,
            "offer_id": row.offer_id,
            "title": title(row.offer_id),
            "template": row.template,
            "model_version": row.model_version,
            "holdout": row.holdout,
            "explored": row.explored,
        }
        for row in recent.rows()
    ]
    return {
        "v": SNAPSHOT_VERSION,
        "ts": iso_utc(report.now_wall),
        "store": generation.settings.store.id,
        "zones": zones,
        "screens": screens,
        "devices": devices,
        "alerts": list(report.alerts),
        "decisions": decisions,
        "health": health,
    }
