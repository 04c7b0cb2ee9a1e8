"""Cloud changes into the gateway's memory, once they are durable: consents, profiles, keys, offers, pickup
orders, erasures.

The ledger commits a page together with its cursor first; only then does `Mirror.apply` make every stage see
it, so a crash in between leaves disk ahead of memory, and the next start loads memory from disk. The end of
a rebuild (a cursor reset) removes from memory what the ledger swept (`Mirror.sweep`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from edge.act.pickup import Order, OrderBook
from edge.control.logs import shopper_ref
from edge.events import Purpose
from edge.identity.consent import ConsentRecord, ConsentStore, ProfileCache
from edge.identity.eid import EidKey, EidResolver
from edge.identity.tokens import TokenVerifier
from edge.ledger.rebuild import Swept
from edge.sync.wire import Change, ChangeKind

log = logging.getLogger(__name__)

CLOUD_SOURCE = "cloud"
# Changes whose id is a shopper's (a log line names them by ``shopper_ref`` only).
SHOPPER_KINDS: Final = frozenset(
    {ChangeKind.PROFILE, ChangeKind.CONSENT, ChangeKind.EID_KEY, ChangeKind.ERASURE}
)


@dataclass(slots=True)
class OfferOverlay:
    """The cloud's offers and inventory over the file catalog.

    A cloud offer replaces the file's offer of the same id; deleting it in the cloud withdraws the cloud's
    version (the file's own offers are the operator's, and only the file removes them). An offer marked
    unavailable is never shown, whichever side it comes from.
    """

    offers: dict[str, dict[str, Any]]
    unavailable: set[str]


def _public_key(pem: str) -> Ed25519PublicKey | None:
    key = load_pem_public_key(pem.encode("ascii"))
    return key if isinstance(key, Ed25519PublicKey) else None


class Mirror:
    """Applies durable cloud changes to the in-memory stages, in page order."""

    def __init__(
        self,
        *,
        consents: ConsentStore,
        profiles: ProfileCache,
        verifier: TokenVerifier,
        eid: EidResolver | None = None,
        is_erased: Callable[[str, float], bool] = lambda _shopper, _at: False,
        file_keys: Mapping[str, Ed25519PublicKey] | None = None,
        orders: OrderBook | None = None,
    ) -> None:
        self._consents = consents
        self._profiles = profiles
        self._verifier = verifier
        self._eid = eid
        self._is_erased = is_erased
        # The token keys of identity.public_key_files (not revoked): a cloud key of the same kid that a
        # rebuild removes gives way to the file's again (a revocation would have removed both).
        self._file_keys = dict(file_keys or {})
        self.overlay = OfferOverlay({}, set())
        # This store's open pickup orders; listeners hear of each order that arrives (the order) or goes
        # (None: collected or cancelled at the cloud).
        self.orders = orders if orders is not None else OrderBook()
        self.order_listeners: list[Callable[[str, Order | None], None]] = []
        self.erasure_listeners: list[Callable[[str], None]] = []
        self.offer_listeners: list[Callable[[OfferOverlay], None]] = []
        # The store's weather from the cloud (docs/context.md), after the ledger kept it (if it was newer).
        self.weather_listeners: list[Callable[[Change], None]] = []
        self.applied: Counter[str] = Counter()

    def apply(self, changes: Sequence[Change]) -> None:
        offers_touched = False
        for change in changes:
            try:
                offers_touched |= self._apply_one(change)
            except (ValueError, TypeError):
                # Validated on the way in; a failure here is a bug, counted and logged, never a stalled sync.
                self.applied["failed"] += 1
                log.exception(
                    "cloud change %s %s of %s not applied in memory",
                    change.kind,
                    change.op,
                    shopper_ref(change.id) if change.kind in SHOPPER_KINDS else change.id,
                )
        if offers_touched:
            self._offers_changed()

    def _apply_one(self, change: Change) -> bool:
        self.applied[f"{change.kind}.{change.op}"] += 1
        data, shopper = change.data, change.id
        match change.kind:
            case ChangeKind.PROFILE:
                if change.op == "delete":
                    self._profiles.forget(shopper)
                elif not self._is_erased(shopper, change.at_wall):
                    self._profiles.put(shopper, data["profile"])
            case ChangeKind.CONSENT:
                # A delete reaches memory through the page's result (``drop``): only what the ledger removed.
                if change.op == "upsert" and not self._is_erased(shopper, data["at_wall"]):
                    record = ConsentRecord(
                        shopper, data["purpose"], data["granted"], data["at_wall"], data["source"]
                    )
                    self._consents.absorb((record,))
            case ChangeKind.EID_KEY:
                if self._eid is not None:
                    if change.op == "delete":
                        self._eid.remove_shopper(shopper)
                    elif not self._is_erased(shopper, change.at_wall):
                        self._eid.add_key(
                            EidKey(
                                shopper,
                                data["identity_key"],
                                data["rotation_exponent"],
                                data["clock_offset_s"],
                            )
                        )
            case ChangeKind.TOKEN_KEY:
                key = None if change.op == "delete" else _public_key(data["public_key_pem"])
                if key is None:
                    self._verifier.revoke_key(change.id)
                else:
                    self._verifier.set_key(change.id, key)
            case ChangeKind.OFFER:
                if change.op == "delete":
                    self.overlay.offers.pop(change.id, None)
                else:
                    self.overlay.offers[change.id] = data["offer"]
                return True
            case ChangeKind.INVENTORY:
                if change.op == "upsert" and not data["available"]:
                    self.overlay.unavailable.add(change.id)
                else:
                    self.overlay.unavailable.discard(change.id)
                return True
            case ChangeKind.ORDER:
                self._order(change)
            case ChangeKind.ERASURE:
                self.erase(shopper)
            case ChangeKind.WEATHER:
                for listener in tuple(self.weather_listeners):
                    listener(change)
        return False

    def _order(self, change: Change) -> None:
        data = change.data
        order: Order | None = None
        if change.op == "upsert" and not self._is_erased(data["shopper_id"], change.at_wall):
            order = Order(
                change.id, data["shopper_id"], data["reference"], data["counter"], data["ready_wall"]
            )
            self.orders.put(order)
        else:
            self.orders.remove(change.id)
        for listener in tuple(self.order_listeners):
            listener(change.id, order)

    def drop(self, consents: Sequence[tuple[str, Purpose]]) -> None:
        """Consents the ledger removed because the cloud no longer sends this store the shopper."""
        for shopper_id, purpose in consents:
            self._consents.drop(shopper_id, purpose)

    def sweep(self, swept: Swept) -> None:
        """The end of a rebuild: what the ledger removed (the cloud's full state lacks it) leaves memory."""
        for shopper_id in swept.profiles:
            self._profiles.forget(shopper_id)
        if self._eid is not None:
            for shopper_id in swept.eid_keys:
                self._eid.remove_shopper(shopper_id)
        for kid in swept.token_keys:
            self._verifier.revoke_key(kid)
            file_key = self._file_keys.get(kid)
            if file_key is not None:
                self._verifier.set_key(kid, file_key)
        for shopper_id, purpose in swept.consents:
            self._consents.drop(shopper_id, purpose)
        for offer_id in swept.offers:
            self.overlay.offers.pop(offer_id, None)
        for offer_id in swept.inventory:
            self.overlay.unavailable.discard(offer_id)
        for order_id in swept.orders:
            self.orders.remove(order_id)
            for listener in tuple(self.order_listeners):
                listener(order_id, None)
        if swept.offers or swept.inventory:
            self._offers_changed()

    def erase(self, shopper_id: str) -> None:
        """Everything the gateway holds in memory about the shopper goes, and every stage lets go."""
        self._consents.forget_shopper(shopper_id)
        self._profiles.forget(shopper_id)
        self.orders.forget_shopper(shopper_id)
        if self._eid is not None:
            self._eid.remove_shopper(shopper_id)
        for listener in tuple(self.erasure_listeners):
            listener(shopper_id)

    def load(
        self,
        *,
        profiles: Mapping[str, dict[str, Any]],
        token_keys: Mapping[str, str],
        eid_keys: Iterable[EidKey],
        offers: Mapping[str, dict[str, Any]],
        unavailable: Iterable[str],
        orders: Iterable[Order] = (),
    ) -> None:
        """Start-up: what earlier pulls stored (consents come through the ledger's own load)."""
        for shopper_id, profile in profiles.items():
            self._profiles.put(shopper_id, profile)
        for kid, pem in token_keys.items():
            key = _public_key(pem)
            if key is not None:
                self._verifier.set_key(kid, key)
        if self._eid is not None:
            for eid_key in eid_keys:
                self._eid.add_key(eid_key)
        for order in orders:
            self.orders.put(order)
        self.overlay.offers.update(offers)
        self.overlay.unavailable.update(unavailable)
        if offers or self.overlay.unavailable:
            self._offers_changed()

    def _offers_changed(self) -> None:
        for listener in tuple(self.offer_listeners):
            listener(self.overlay)
