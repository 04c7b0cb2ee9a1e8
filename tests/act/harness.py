"""A display board over a recording publisher, a presence map and deterministic decisions."""

from __future__ import annotations

import json
from typing import Any

from edge.act.displays import DisplayBoard
from edge.clock import ManualClock
from edge.config.model import DisplaySettings, FallbackContent
from edge.events import Decision
from edge.transport.topics import Topics


class Harness:
    """Each shopper gets their own offer; decisions are named by display, shopper and a count, so two boards
    given the same inputs publish the same bytes if and only if they behave the same."""

    def __init__(
        self,
        min_display_s: float = 8,
        ttl_s: float = 45,
        *,
        displays: list[DisplaySettings] | None = None,
        board: type[DisplayBoard] = DisplayBoard,
    ) -> None:
        self.clock = ManualClock()
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.where: dict[str, str] = {}
        self.committed: list[Decision] = []
        self.decided = 0
        if displays is None:
            displays = [
                DisplaySettings(
                    id="d1",
                    zone="z",
                    min_display_s=min_display_s,
                    content_ttl_s=ttl_s,
                    fallback=FallbackContent(template="loop", data={"p": 1}),
                ),
                DisplaySettings(id="d2", zone="other"),
            ]
        self.board = board(
            displays,
            topics=Topics("store/s1"),
            publish=lambda topic, payload, retain: self.published.append((topic, json.loads(payload))),
            decide=self.decide,
            is_present=lambda shopper, zone: self.where.get(shopper) == zone,
            clock=self.clock,
        )

    async def commit(self, decisions: list[Decision]) -> bool:
        self.committed += decisions
        return True

    async def refuse(self, decisions: list[Decision]) -> bool:
        return False  # a replayed check-in's claim: nothing is shown

    async def fail(self, decisions: list[Decision]) -> bool:
        raise OSError("disk full")

    async def decide(self, display_id: str, zone: str, shopper_id: str | None) -> Decision:
        self.decided += 1
        return Decision(
            decision_id=f"{display_id}-{shopper_id}-{self.decided}",
            display_id=display_id,
            zone=zone,
            at_wall=self.clock.wall(),
            shopper_id=shopper_id,
            offer_id=f"offer-for-{shopper_id}",
            template="card",
            data={"s": shopper_id},
            model_version="m",
            propensity=1.0,
            explored=False,
            holdout=False,
            personalized=True,
        )

    def last(self, display: str = "d1") -> dict[str, Any]:
        return [body for topic, body in self.published if topic == f"store/s1/display/{display}/content"][-1]

    def shown(self) -> dict[str, tuple[Any, Any]]:
        """Each display's latest manifest: its offer and version."""
        return {topic: (body["offer_id"], body["version"]) for topic, body in self.published}
