"""The profile store's storage: the one async interface the server uses, its records, and ``open_storage``.

Two implementations share one SQL logic (``profilestore.sqlstore``): SQLite (``sqlite.py``, default, one
process) and PostgreSQL (``postgres.py``, several stateless server replicas on one database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal, Protocol


class StorageError(Exception):
    """Base of the storage's own errors."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or answered with a failure; the request may be retried."""


class TokenInUseError(StorageError):
    """A store token is already registered for another store (each token belongs to exactly one store)."""


class UnknownStoreError(StorageError):
    """The store named (an order's, a shopper's home store) is not registered."""


class Keep(Enum):
    """``home_store=KEEP``: the shopper's home store stays as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
HomeStore = str | None | Literal[Keep.KEEP]


class OrderStoreError(StorageError):
    """The order exists for another store: an order's store cannot change (delete it and create it again)."""


@dataclass(slots=True, frozen=True)
class ChangeRecord:
    """One entry of the change log; ``data`` is the wire ``data`` of docs/sync.md."""

    seq: int
    kind: str
    id: str
    op: str
    at_us: int
    data: dict[str, Any]


@dataclass(slots=True, frozen=True)
class ChangePage:
    changes: list[ChangeRecord]
    more: bool
    # The highest sequence number committed, to tell a cursor from the future (another database) apart.
    last_seq: int
    # Where the page's cursor stands: its last change; or, when nothing more is ready, ``last_seq`` (the
    # changes for other stores in between are not this store's to see, so its cursor passes them too).
    through: int


@dataclass(slots=True, frozen=True)
class ConsentState:
    purpose: str
    granted: bool
    at_us: int
    source: str


@dataclass(slots=True, frozen=True)
class EidKeyState:
    identity_key: bytes
    rotation_exponent: int
    clock_offset_s: int


@dataclass(slots=True, frozen=True)
class ShopperState:
    shopper_id: str
    profile: dict[str, Any] | None
    consents: dict[str, ConsentState]
    eid_key: EidKeyState | None


@dataclass(slots=True, frozen=True)
class ShopperWrite:
    """A write about one shopper. Its changes are written once for each store that holds the shopper
    (docs/profile-store.md, "Which store holds which shopper"): ``seq`` is the last change appended (None:
    no store holds the shopper, nothing was appended), ``stores`` how many stores hold the shopper now,
    ``existed`` whether there was something to replace or delete."""

    seq: int | None
    stores: int
    existed: bool


@dataclass(slots=True, frozen=True)
class ProfileOutcome(ShopperWrite):
    home_store: str | None  # after the write


@dataclass(slots=True, frozen=True)
class ConsentOutcome:
    """``applied`` False: an older (or tied grant, or pre-erasure) consent that changed nothing."""

    applied: bool
    seq: int | None
    current: ConsentState | None
    stores: int = 0  # the stores it was written for


@dataclass(slots=True, frozen=True)
class DeleteOutcome:
    seq: int
    existed: bool


@dataclass(slots=True, frozen=True)
class ErasureOutcome:
    seq: int
    profile: bool
    consents: int
    eid_key: bool
    events: int  # pushed events whose shopper_id was removed
    orders: int  # pickup orders of the shopper (each store that had one pulls its delete)
    stores: int  # the stores the erasure was written for; 0: for every store (none was known to hold them)
    campaign_exposures: int = 0  # the shopper's campaign exposures (and their touches) removed


@dataclass(slots=True, frozen=True)
class Sighting:
    """A store named a shopper (a pushed event, a profile fetch) at ``at_us``."""

    shopper_id: str
    at_us: int


@dataclass(slots=True, frozen=True)
class EnrolOutcome:
    joined: int  # shoppers the store did not hold: their current state was appended for it
    renewed: int  # memberships made longer
    erasures: int  # erased shoppers the store named from before their erasure: it was sent the erasure


@dataclass(slots=True, frozen=True)
class EventRecord:
    """A validated pushed event (``id`` in canonical lower-case form)."""

    id: str
    kind: str
    event_class: str
    at_us: int
    shopper_id: str | None
    data: dict[str, Any]


@dataclass(slots=True, frozen=True)
class PushOutcome:
    accepted: int
    duplicates: int
    # Positions (in the given sequence) of events whose id another store already used: rejected for good.
    foreign: list[int]
    # Positions of the events stored by this call (not duplicates): what the cloud acts on once.
    fresh: list[int] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class StoredEvent:
    recv_seq: int
    store_id: str
    received_us: int
    event: EventRecord


@dataclass(slots=True, frozen=True)
class EventPage:
    events: list[StoredEvent]
    more: bool
    last_recv_seq: int


@dataclass(slots=True, frozen=True)
class SaleLine:
    sku: str
    qty: int
    price: float
    category: str | None = None


@dataclass(slots=True, frozen=True)
class SaleRecord:
    """A sale of either channel: ``online`` (posted by the web shop) or ``store`` (a pushed conversion)."""

    sale_id: str
    channel: str
    store_id: str | None
    shopper_id: str | None
    at_us: int
    total: float
    currency: str | None
    lines: tuple[SaleLine, ...]


@dataclass(slots=True, frozen=True)
class CampaignExposureRecord:
    """An online campaign a shopper saw, with what it promoted (SKUs and/or one category)."""

    exposure_id: str
    shopper_id: str
    campaign_id: str
    at_us: int
    skus: tuple[str, ...]
    category: str | None


@dataclass(slots=True, frozen=True)
class PostOutcome:
    """A posted sale or campaign exposure: ``duplicate`` when its id was stored before (the first content
    stands, as for pushed events); ``anonymous`` when it was dated at or before its shopper's erasure (kept
    without the shopper); ``stores``: the stores a campaign exposure was sent to (0 for a sale)."""

    duplicate: bool
    anonymous: bool = False
    stores: int = 0


@dataclass(slots=True, frozen=True)
class CrossRow:
    """One cell group of the cross-channel report: sales of ``to_channel`` attributed to touches of
    ``from_channel``/``touchpoint`` (``ref_id``: the offer or campaign; None: summed over them)."""

    basis: str  # last_touch | any_touch
    from_channel: str
    touchpoint: str
    ref_id: str | None
    to_channel: str
    conversions: int
    revenue: float


@dataclass(slots=True, frozen=True)
class CrossTotals:
    """What the report's window held: sales (all, identified) per channel, touches per touchpoint, pushed
    events the join could not use per reason, and the currencies of the sales."""

    sales: dict[str, int]
    identified_sales: dict[str, int]
    touches: dict[str, int]
    skipped: dict[str, int]
    currencies: tuple[str, ...]


class Storage(Protocol):
    """Everything the server asks of a database. Every write that changes what gateways see appends to the
    change log in the same transaction, and change log order is commit order (see each implementation)."""

    @property
    def instance(self) -> str:
        """A random id made when the database was created; part of every cursor."""
        ...

    async def ping(self) -> None: ...

    # stores
    async def put_store(self, store_id: str, token_sha256: bytes, now_us: int) -> bool:
        """Register ``store_id`` or replace its token; True if new. TokenInUseError if another store has it."""
        ...

    async def store_token(self, store_id: str) -> bytes | None: ...

    async def store_of_token(self, token_sha256: bytes) -> str | None: ...

    # the change log
    async def changes(self, after: int, limit: int, budget_bytes: int, *, store_id: str | None) -> ChangePage:
        """The changes after ``after`` that ``store_id`` sees: those for every store and its own (None: the
        whole log, every store's changes)."""
        ...

    # which store holds which shopper
    async def enrol(
        self, store_id: str, sightings: Sequence[Sighting], *, reason: str, window_us: int, now_us: int
    ) -> EnrolOutcome:
        """The store named these shoppers (``reason``: ``seen`` in its pushes, ``fetched`` on a cache miss):
        each is the store's until ``at + window_us`` (or longer). A shopper the store did not hold has their
        current state appended for it; an erased shopper named from before the erasure has the erasure
        appended for it (the store may hold what it knew of them)."""
        ...

    async def expire(self, store_id: str, now_us: int, limit: int) -> int:
        """Let go the shoppers whose membership of ``store_id`` ran out (not its home shoppers, not seen or
        fetched there within the window): up to ``limit`` of them get deletes of what the store was sent.
        How many."""
        ...

    # writes that append changes
    async def put_profile(
        self, shopper_id: str, profile: dict[str, Any], now_us: int, *, home_store: HomeStore = KEEP
    ) -> ProfileOutcome:
        """Set the profile, and the home store unless ``KEEP`` (None: no home store); UnknownStoreError if the
        home store is not registered."""
        ...

    async def put_consent(
        self, shopper_id: str, purpose: str, granted: bool, at_us: int, source: str, now_us: int
    ) -> ConsentOutcome: ...

    async def put_eid_key(self, shopper_id: str, key: EidKeyState, now_us: int) -> ShopperWrite: ...

    async def delete_eid_key(self, shopper_id: str, now_us: int) -> ShopperWrite: ...

    async def erase_shopper(self, shopper_id: str, now_us: int) -> ErasureOutcome: ...

    async def put_token_key(self, kid: str, public_key_pem: str, now_us: int) -> int: ...

    async def delete_token_key(self, kid: str, now_us: int) -> DeleteOutcome: ...

    async def put_offer(self, offer_id: str, offer: dict[str, Any], now_us: int) -> int: ...

    async def delete_offer(self, offer_id: str, now_us: int) -> DeleteOutcome: ...

    async def put_inventory(
        self, offer_id: str, available: bool, quantity: int | None, now_us: int
    ) -> int: ...

    async def delete_inventory(self, offer_id: str, now_us: int) -> DeleteOutcome: ...

    async def put_order(
        self,
        order_id: str,
        store_id: str,
        shopper_id: str,
        reference: str,
        counter: str,
        ready_us: int,
        now_us: int,
    ) -> int:
        """Add or replace a pickup order (an ``order`` change only ``store_id`` pulls); the change's seq.

        UnknownStoreError if the store is not registered, OrderStoreError if the order is another store's.
        """
        ...

    async def delete_order(self, order_id: str, now_us: int) -> DeleteOutcome | None:
        """Remove the order (a delete change for its store); None, and no change, if there is no such order."""
        ...

    async def put_weather(self, store_id: str, weather: dict[str, Any], now_us: int) -> int:
        """Set the store's weather (a `weather` change only ``store_id`` pulls, replacing its last one); the
        change's seq. UnknownStoreError if the store is not registered."""
        ...

    async def collect_orders(self, store_id: str, order_ids: Sequence[str], now_us: int) -> int:
        """Remove the orders of ``store_id`` among ``order_ids`` (collected there; other ids are ignored),
        each with a delete change for the store; how many were removed."""
        ...

    # reads
    async def shopper(self, shopper_id: str) -> ShopperState | None: ...

    # events
    async def push_events(self, store_id: str, events: Sequence[EventRecord], now_us: int) -> PushOutcome:
        """Store each event once by id; in the same transaction, what the cross-channel join needs of the
        fresh ones (``profilestore.sqlcross.index_events``)."""
        ...

    async def events(self, store_id: str | None, after: int, limit: int, budget_bytes: int) -> EventPage: ...

    # online and offline together (profilestore.sqlcross)
    async def post_sale(self, sale: SaleRecord, now_us: int) -> PostOutcome:
        """Store an online sale once by id (a resend is a duplicate: the first content stands)."""
        ...

    async def post_campaign_exposure(self, exposure: CampaignExposureRecord, now_us: int) -> PostOutcome:
        """Store a campaign exposure once by id, and send it to the stores holding the shopper while their
        ``measurement`` consent is granted."""
        ...

    async def cross_channel(
        self, since_us: int, until_us: int, window_us: int
    ) -> tuple[list[CrossRow], CrossTotals]:
        """Sales in ``[since_us, until_us)`` attributed to touches of the same shopper at most ``window_us``
        before them, matching a SKU or the category: rows per touch and per touchpoint, and the totals."""
        ...

    async def stats(self) -> dict[str, Any]: ...


def database_kind(url: str) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", dsn)`` for a database URL or a plain file path."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path or path == "/":
            raise ValueError("sqlite:// needs a file path (sqlite:///abs/path.db or sqlite://relative.db)")
        return "sqlite", path
    if "://" in url:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite://PATH, a path, or postgresql://...")
    if not url:
        raise ValueError("an empty database URL")
    return "sqlite", url


@asynccontextmanager
async def open_storage(url: str) -> AsyncIterator[Storage]:
    """The storage at ``url`` (``sqlite:///path.db``, a path, or ``postgresql://...``), schema migrated."""
    kind, target = database_kind(url)
    if kind == "postgresql":
        from profilestore.postgres import open_postgres  # noqa: PLC0415 - asyncpg only when asked for

        async with open_postgres(target) as storage:
            yield storage
    else:
        from profilestore.sqlite import open_sqlite  # noqa: PLC0415

        async with open_sqlite(Path(target)) as storage:
            yield storage
