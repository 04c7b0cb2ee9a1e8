"""ESPresense nodes as extra scanners: ``espresense/devices/{id}/{room}`` reports, parsed purely.

A node publishes one JSON report per device it hears. Only three kinds of id mean anything here:
store beacons (``iBeacon:{uuid}-{major}-{minor}``, ``eddy:{namespace}-{instance}``) and raw Eddystone-EIDs
(``eid:{16 hex}``, from firmware that forwards the EID frame). Every other id (phones' MACs, names,
fingerprints) is counted as anonymous and dropped unread: it is never stored, and never logged: a log line
names these topics only through ``loggable_topic``.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from edge.sources.payloads import Rejected
from edge.sources.rejections import EspresenseReject

# ESPresense room names are topic segments; the same bound as our own ids.
MAX_SEGMENT: Final = 64
# RSSI outside this range is not a radio reading (ESPresense sends -128 for "unknown").
RSSI_MIN: Final = -127
RSSI_MAX: Final = 20
# What a log line shows instead of a topic's device id (it can be a phone's Bluetooth address).
REDACTED_DEVICE: Final = "<device>"


@dataclass(slots=True, frozen=True)
class Anonymous:
    """A report about a device that is none of ours (a phone, a watch): counted, never kept or logged."""


ANONYMOUS: Final = Anonymous()


@dataclass(slots=True, frozen=True)
class RemoteBeacon:
    """A store-beacon report; ``key`` matches the frame parsers' keys."""

    room: str
    key: str
    rssi: int


@dataclass(slots=True, frozen=True)
class RemoteEid:
    """An Eddystone-EID report, to be resolved like a local advert."""

    room: str
    eid: bytes
    rssi: int


def parse_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """``{prefix}/devices/{id}/{room}`` -> (id, room)."""
    head = f"{prefix}/devices/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or len(parts[1]) > MAX_SEGMENT:
        return None
    return parts[0], parts[1]


def loggable_topic(topic: str, prefix: str, rooms: Container[str]) -> str:
    """``topic`` safe for a log line: the device segment replaced, the room kept only if it is configured.

    Applied to any topic the ESPresense subscription hears, well-formed or not: any segment after
    ``devices/`` may carry an address, so only a room the store configured itself survives.
    """
    head = f"{prefix}/devices/"
    parts = topic[len(head) :].split("/") if topic.startswith(head) else []
    room = parts[1] if len(parts) == 2 and parts[1] in rooms else REDACTED_DEVICE
    return f"{head}{REDACTED_DEVICE}/{room}"


def _beacon_key(device_id: str) -> str | None:
    kind, _, value = device_id.partition(":")
    if kind == "iBeacon":
        uuid, _, rest = value.lower().rpartition("-")  # "...-{major}-{minor}": split from the right
        uuid, _, major = uuid.rpartition("-")
        if (
            len(uuid) == 36
            and major.isdigit()
            and rest.isdigit()
            and int(major) < 65536
            and int(rest) < 65536
        ):
            return f"ibeacon:{uuid}:{int(major)}:{int(rest)}"
        return None
    if kind == "eddy":
        namespace, _, instance = value.lower().partition("-")
        if len(namespace) == 20 and len(instance) == 12 and _is_hex(namespace + instance):
            return f"eddystone-uid:{namespace}:{instance}"
    return None


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)


def parse_report(
    topic: str, payload: bytes, prefix: str = "espresense"
) -> RemoteBeacon | RemoteEid | Anonymous | Rejected:
    """One node report -> a beacon or EID sighting, ``ANONYMOUS`` for ids we ignore, or why it is refused."""
    where = parse_topic(topic, prefix)
    if where is None:
        return Rejected(EspresenseReject.BAD_TOPIC)
    device_id, room = where
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError: JSONDecodeError and an integer literal past Python's 4300-digit limit.
        return Rejected(EspresenseReject.NOT_JSON)
    if not isinstance(body, dict):
        return Rejected(EspresenseReject.NOT_OBJECT)
    # Only ``rssi`` is read; every other field (``distance``, ``raw``, ``tx``…) is ignored unread. The bounds
    # are compared before any conversion: ``math.isfinite`` or ``round`` on a 401-digit JSON integer raises
    # OverflowError, and NaN fails the comparison (inf is outside it).
    rssi = body.get("rssi")
    if isinstance(rssi, bool) or not isinstance(rssi, int | float) or not RSSI_MIN <= rssi <= RSSI_MAX:
        return Rejected(EspresenseReject.BAD_RSSI)
    if device_id.startswith("eid:"):
        raw = device_id[4:].lower()
        if len(raw) != 16 or not _is_hex(raw):
            return Rejected(EspresenseReject.BAD_EID)
        return RemoteEid(room=room, eid=bytes.fromhex(raw), rssi=round(rssi))
    key = _beacon_key(device_id)
    if key is None:
        return ANONYMOUS
    return RemoteBeacon(room=room, key=key, rssi=round(rssi))
