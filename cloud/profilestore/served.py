"""What a store is served of a shopper (issue 15): the profile's allow-listed fields, the consents, and the
EID identity key only while the shopper's latest ``presence_ble`` consent is a grant; and their wire form.

One rule for every way a store learns about a shopper: a pulled change (``profilestore.sqlscope``) and a
fetched profile (``profilestore.store_api``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from profilestore.models import render_timestamp
from profilestore.storage import ConsentState, EidKeyState, ShopperState
from storecontract.profiles import minimal_profile
from storecontract.purposes import Purpose


def served_profile(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    """The profile as a store may hold it: ``storecontract.profiles.PROFILE_FIELDS`` only (never a name or
    an e-mail), or None when there is none."""
    return None if profile is None else minimal_profile(profile)


def key_allowed(consents: Mapping[str, ConsentState]) -> bool:
    """Whether a store may hold the shopper's EID key: their latest ``presence_ble`` consent is a grant."""
    state = consents.get(Purpose.PRESENCE_BLE.value)
    return state is not None and state.granted


def served_key(state: ShopperState) -> EidKeyState | None:
    """The shopper's EID key when a store may hold it, else None."""
    return state.eid_key if key_allowed(state.consents) else None


def consent_wire(state: ConsentState) -> dict[str, Any]:
    """A consent as the wire carries it (a ``consent`` change's data)."""
    return {
        "purpose": state.purpose,
        "granted": state.granted,
        "at": render_timestamp(state.at_us),
        "source": state.source,
    }


def eid_key_wire(key: EidKeyState) -> dict[str, Any]:
    """An EID key as the wire carries it (an ``eid_key`` change's data)."""
    return {
        "identity_key": base64.b64encode(key.identity_key).decode("ascii"),
        "rotation_exponent": key.rotation_exponent,
        "clock_offset_s": key.clock_offset_s,
    }
