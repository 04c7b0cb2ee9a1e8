"""Pure parser of a shopper's privacy action at a touchpoint (``{root}/privacy/action``, docs/mqtt.md).

A kiosk, the staff tablet or a till publishes it for a shopper who is present and identified by their own
check-in token (the same single-use token as a check-in)::

    {"v": 1, "token": "<JWT>", "action": "consent", "purpose": "personalization", "granted": false,
     "source": "kiosk", "reply_to": "kiosk-3-17"}
    {"v": 1, "token": "<JWT>", "action": "erase", "source": "staff"}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from edge.events import Purpose
from edge.sources.payloads import MAX_TOKEN_LEN, Rejected, has_bad_ts, is_id, json_envelope
from edge.sources.rejections import PrivacyReject

ACTIONS: Final = frozenset({"consent", "erase"})
# Where in the store the action was taken: kept as the consent's source, pushed to the cloud with it.
SOURCES: Final = frozenset({"kiosk", "staff", "till", "app"})
_PURPOSES: Final = frozenset(purpose.value for purpose in Purpose)


@dataclass(frozen=True, slots=True)
class PrivacyAction:
    token: str = field(repr=False)
    action: str
    source: str
    purpose: Purpose | None = None
    granted: bool | None = None
    reply_to: str | None = None


def parse_privacy_action(payload: bytes) -> PrivacyAction | Rejected:
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return body
    if has_bad_ts(body):
        return Rejected(PrivacyReject.BAD_TS)
    token = body.get("token")
    if not isinstance(token, str) or not token:
        return Rejected(PrivacyReject.MISSING_TOKEN)
    if len(token) > MAX_TOKEN_LEN:
        return Rejected(PrivacyReject.OVERSIZED_TOKEN)
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        return Rejected(PrivacyReject.BAD_ACTION)
    source = body.get("source", "kiosk")
    if not isinstance(source, str) or source not in SOURCES:
        return Rejected(PrivacyReject.BAD_SOURCE)
    reply_to = body.get("reply_to")
    if reply_to is not None and not is_id(reply_to):
        return Rejected(PrivacyReject.BAD_REPLY_TO)
    if action == "erase":
        return PrivacyAction(token=token, action=action, source=source, reply_to=reply_to)
    purpose, granted = body.get("purpose"), body.get("granted")
    if not isinstance(purpose, str) or purpose not in _PURPOSES:
        return Rejected(PrivacyReject.BAD_PURPOSE)
    if not isinstance(granted, bool):
        return Rejected(PrivacyReject.BAD_GRANTED)
    return PrivacyAction(token, action, source, Purpose(purpose), granted, reply_to)


def reply_to_of(payload: bytes) -> str | None:
    """The well-formed ``reply_to`` of an action refused for another reason, if it has one."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return None
    reply_to = body.get("reply_to")
    return reply_to if is_id(reply_to) else None
