"""What the touchpoints beside the screens (smart devices, staff notices) work with, handed over as one."""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock
from edge.flow.zones import ZoneCounts
from edge.identity import ConsentStore, ProfileCache
from edge.ledger import Ledger
from edge.sources.rejections import RejectCounter
from edge.transport.mqtt import MqttLink
from edge.transport.topics import Topics


@dataclass(frozen=True, slots=True)
class FloorParts:
    """Who is where (``counts``), their consents and profiles, the ledger, the broker, the refusal counter."""

    counts: ZoneCounts
    consents: ConsentStore
    profiles: ProfileCache
    ledger: Ledger
    link: MqttLink
    topics: Topics
    rejects: RejectCounter
    clock: Clock
