"""Pure parsers for inbound MQTT payloads (bytes -> typed record or a rejection reason); never raise."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from edge.clock import parse_iso_utc

log = logging.getLogger(__name__)

CHECKIN_SOURCES: Final = frozenset({"app", "kiosk", "qr"})
ACK_STATUSES: Final = frozenset({"shown", "failed"})
# Zone and display ids are topic segments; the same rule as the config's id pattern.
MAX_ID_LEN: Final = 64
# A JWT larger than this is not one of ours (ours are ~300 bytes); refuse before any crypto.
MAX_TOKEN_LEN: Final = 4096


@dataclass(slots=True, frozen=True)
class CheckinMessage:
    token: str
    zone: str
    source: str


@dataclass(slots=True, frozen=True)
class AckMessage:
    version: int
    decision_id: str | None
    status: str
    shown_at_wall: float | None


@dataclass(slots=True, frozen=True)
class Rejected:
    """Why a payload was refused; ``reason`` is a short stable label used in counters."""

    reason: str


def _json_object(payload: bytes) -> dict[str, Any] | Rejected:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("not_utf8")
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return Rejected("not_json")
    if not isinstance(body, dict):
        return Rejected("not_object")
    if body.get("v", 1) != 1:
        return Rejected("unsupported_version")
    return body


def _is_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LEN
        and value.replace("-", "").replace("_", "").replace(".", "").isalnum()
        and value.isascii()
    )


def parse_checkin(payload: bytes) -> CheckinMessage | Rejected:
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return body
    token, zone, source = body.get("token"), body.get("zone"), body.get("source", "app")
    if not isinstance(token, str) or not token:
        return Rejected("missing_token")
    if len(token) > MAX_TOKEN_LEN:
        return Rejected("oversized_token")
    if not _is_id(zone):
        return Rejected("bad_zone")
    if source not in CHECKIN_SOURCES:
        return Rejected("bad_source")
    assert isinstance(zone, str)
    return CheckinMessage(token=token, zone=zone, source=str(source))


def parse_ack(payload: bytes) -> AckMessage | Rejected:
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return body
    version, decision_id, status = body.get("version"), body.get("decision_id"), body.get("status")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return Rejected("bad_version")
    if decision_id is not None and (not isinstance(decision_id, str) or not 0 < len(decision_id) <= 64):
        return Rejected("bad_decision_id")
    if status not in ACK_STATUSES:
        return Rejected("bad_status")
    shown_at = body.get("shown_at")
    shown_wall: float | None = None
    if shown_at is not None:
        if not isinstance(shown_at, str):
            return Rejected("bad_shown_at")
        try:
            shown_wall = parse_iso_utc(shown_at)
        except (ValueError, OverflowError):
            return Rejected("bad_shown_at")
    return AckMessage(version=version, decision_id=decision_id, status=str(status), shown_at_wall=shown_wall)


def parse_availability(payload: bytes) -> bool | Rejected:
    """A display's LWT: plain ``online``/``offline`` (Home Assistant style) or ``{"state": ...}``."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected("not_utf8")
    if text in ("online", "offline"):
        return text == "online"
    body = _json_object(payload)
    if isinstance(body, Rejected):
        return Rejected("bad_state")
    state = body.get("state")
    if state == "online":
        return True
    if state == "offline":
        return False
    return Rejected("bad_state")


class RejectCounter:
    """Counts rejections by (kind, reason) and logs only the first of each kind, so junk cannot flood logs."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def reject(self, kind: str, reason: str, topic: str) -> None:
        first_of_kind = not any(key[0] == kind for key in self.counts)
        self.counts[(kind, reason)] += 1
        if first_of_kind:
            log.warning(
                "rejected %s payload on %s: %s (further %s rejections are only counted)",
                kind,
                topic,
                reason,
                kind,
            )

    def as_dict(self) -> dict[str, int]:
        return {f"{kind}.{reason}": count for (kind, reason), count in sorted(self.counts.items())}
