"""Per-shopper, per-purpose consent (latest change wins, a withdrawal wins a tie) and the profile cache."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge.clock import Clock, parse_iso_utc
from edge.events import Purpose
from edge.ledger import ConsentRow

log = logging.getLogger(__name__)

ConsentListener = Callable[[str, Purpose, bool], None]


class ConsentSink(Protocol):
    """Where consents are made durable (the ledger)."""

    async def set_consent(self, row: ConsentRow) -> None: ...

    async def load_consents(self) -> list[ConsentRow]: ...


class ConsentFileError(Exception):
    """The seed file is unusable; the message names the shopper index and key."""


@dataclass(slots=True)
class _State:
    granted: bool
    at_wall: float


def newer(current: _State | None, granted: bool, at_wall: float) -> bool:
    """Does a change (granted, at_wall) replace ``current``? Latest wins; a withdrawal wins a tie."""
    if current is None:
        return True
    if at_wall != current.at_wall:
        return at_wall > current.at_wall
    return current.granted and not granted


class ProfileCache:
    """Profiles of known shoppers (seed file today, cloud sync later); used only with personalization."""

    def __init__(self) -> None:
        self._profiles: dict[str, dict[str, Any]] = {}

    def get(self, shopper_id: str) -> dict[str, Any] | None:
        return self._profiles.get(shopper_id)

    def put(self, shopper_id: str, profile: dict[str, Any]) -> None:
        self._profiles[shopper_id] = profile

    def forget(self, shopper_id: str) -> None:
        self._profiles.pop(shopper_id, None)

    def __len__(self) -> int:
        return len(self._profiles)


class ConsentStore:
    """The in-memory view every stage reads; changes are written through to the ledger."""

    def __init__(self, sink: ConsentSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._state: dict[str, dict[Purpose, _State]] = {}
        self._listeners: list[ConsentListener] = []

    async def load(self) -> int:
        rows = await self._sink.load_consents()
        for row in rows:
            self._state.setdefault(row.shopper_id, {})[row.purpose] = _State(row.granted, row.at_wall)
        return len(rows)

    def granted(self, shopper_id: str) -> frozenset[Purpose]:
        purposes = self._state.get(shopper_id, {})
        return frozenset(purpose for purpose, state in purposes.items() if state.granted)

    def has(self, shopper_id: str, purpose: Purpose) -> bool:
        state = self._state.get(shopper_id, {}).get(purpose)
        return state is not None and state.granted

    def subscribe(self, listener: ConsentListener) -> Callable[[], None]:
        """Call ``listener`` on every change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def apply(
        self, shopper_id: str, purpose: Purpose, granted: bool, at_wall: float, source: str
    ) -> bool:
        """Apply one change under the latest-wins rule; returns whether it changed anything."""
        purposes = self._state.setdefault(shopper_id, {})
        current = purposes.get(purpose)
        if not newer(current, granted, at_wall):
            return False
        changed = current is None or current.granted != granted
        row = ConsentRow(shopper_id, purpose, granted, at_wall, source)
        if granted:
            # A grant counts only once it is durable: a crash must not leave us using data without consent.
            await self._sink.set_consent(row)
            purposes[purpose] = _State(granted, at_wall)
        else:
            # A withdrawal takes effect at once, before the write returns.
            purposes[purpose] = _State(granted, at_wall)
            await self._sink.set_consent(row)
        if changed:
            for listener in list(self._listeners):
                listener(shopper_id, purpose, granted)
        return True

    async def seed_from_file(self, path: Path, profiles: ProfileCache) -> int:
        """Apply the seed file's consents (source "seed") and cache its profiles; returns shoppers read."""
        shoppers = parse_seed(path)
        for shopper_id, at_wall, consents, profile in shoppers:
            for purpose, granted in consents.items():
                await self.apply(shopper_id, purpose, granted, at_wall, "seed")
            if profile is not None:
                profiles.put(shopper_id, profile)
        log.info("seeded consents of %d shoppers from %s", len(shoppers), path)
        return len(shoppers)


SeedEntry = tuple[str, float, dict[Purpose, bool], dict[str, Any] | None]


def parse_seed(path: Path) -> list[SeedEntry]:
    """Validate the seed file strictly: every problem names the shopper's index and key."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConsentFileError(f"{path}: unreadable: {exc}") from None
    shoppers = document.get("shoppers") if isinstance(document, dict) else None
    if not isinstance(shoppers, list):
        raise ConsentFileError(f"{path}: expected an object with a 'shoppers' list")
    entries: list[SeedEntry] = []
    for index, item in enumerate(shoppers):
        where = f"{path}: shoppers.{index}"
        if not isinstance(item, dict):
            raise ConsentFileError(f"{where}: expected an object")
        shopper_id = item.get("id")
        if not isinstance(shopper_id, str) or not shopper_id:
            raise ConsentFileError(f"{where}.id: expected a non-empty string")
        try:
            at_wall = parse_iso_utc(str(item.get("at", "1970-01-01T00:00:00Z")))
        except ValueError:
            raise ConsentFileError(f"{where}.at: not an ISO-8601 time") from None
        consents = item.get("consents", {})
        if not isinstance(consents, dict):
            raise ConsentFileError(f"{where}.consents: expected an object")
        parsed: dict[Purpose, bool] = {}
        for key, value in consents.items():
            try:
                purpose = Purpose(key)
            except ValueError:
                known = ", ".join(p.value for p in Purpose)
                raise ConsentFileError(f"{where}.consents.{key}: unknown purpose (known: {known})") from None
            if not isinstance(value, bool):
                raise ConsentFileError(f"{where}.consents.{key}: expected true or false")
            parsed[purpose] = value
        profile = item.get("profile")
        if profile is not None and not isinstance(profile, dict):
            raise ConsentFileError(f"{where}.profile: expected an object")
        entries.append((shopper_id, at_wall, parsed, profile))
    return entries
