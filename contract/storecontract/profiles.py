"""What of a shopper's profile reaches a store (issue 15, data minimisation): one allow-list, both sides.

The cloud serves a store only these keys (pulled profiles and fetched ones), and the gateway keeps only
these, whatever it is sent. A legal name or an e-mail is never among them: a shopper who wants staff to use
a name chooses ``staff_display_name`` for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

PROFILE_FIELDS: Final = frozenset(
    {
        "affinity",  # the decision model: category -> 0..1
        "visits",  # the decision model
        "device_preferences",  # smart devices and kiosks
        "accessibility",  # smart devices and kiosks: needs before preferences
        "language",  # staff notices, kiosks
        "staff_display_name",  # staff notices: the name the shopper chose for staff, never the legal one
        "sizes",  # staff notices
        "interests",  # staff notices
    }
)


def minimal_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """``profile`` with only ``PROFILE_FIELDS``, in its own order."""
    return {key: value for key, value in profile.items() if key in PROFILE_FIELDS}
