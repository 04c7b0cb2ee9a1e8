"""Eddystone-EID: the spec's EID computation, the opted-in shoppers' keys file, and the EID -> shopper resolver.

Identity keys are secrets: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edge.clock import Clock
from edge.control.logs import shopper_ref
from edge.events import Purpose

_LOGGER = logging.getLogger(__name__)

# AES-128, as the spec fixes it.
IDENTITY_KEY_BYTES: Final = 16
# The spec truncates the second AES output to 64 bits.
EID_BYTES: Final = 8
# The spec's range for K: a new EID every 2**K seconds, from 1 s to about 9 hours.
MAX_ROTATION_EXPONENT: Final = 15
# The beacon's time counter is a 32-bit register; it wraps.
COUNTER_MODULUS: Final = 1 << 32
# Each neighbour period costs two more EIDs per key in the table. Drift of a phone's clock is seconds, far
# below one period; a window wider than this means a wrong clock offset, which more neighbours would hide.
MAX_NEIGHBOURS: Final = 16
# A step back of the wall clock larger than this (an NTP step, a manual set) rebuilds every key's window;
# smaller jitter is left to the neighbour periods.
CLOCK_STEP_BACK_S: Final = 1.0
# Shopper ids are the cloud's pseudonyms; the same bound as a token's ``sub``.
MAX_SHOPPER_ID_CHARS: Final = 128
# A keys file entry is ~150 bytes; 100k opted-in shoppers stay far below this, and a misconfigured path (a
# log, a database) is refused before it is read into memory.
MAX_KEY_FILE_BYTES: Final = 32 * 1024 * 1024

_KEY_FIELDS: Final = ("shopper_id", "identity_key", "rotation_exponent", "clock_offset_s")
_HEX_DIGITS: Final = frozenset(string.hexdigits)
# The spec's 16-byte input blocks start with 11 zero bytes; then the temporary key's salt 0xFF and 2 zeros.
_ZERO_PAD: Final = bytes(11)
_TEMPORARY_KEY_SALT: Final = b"\xff\x00\x00"

ConsentListener = Callable[[str, Purpose, bool], None]


def compute_eid(identity_key: bytes, rotation_exponent: int, time_counter: int) -> bytes:
    """The 8-byte EID a beacon with ``identity_key`` and exponent K advertises at ``time_counter``.

    google/eddystone ``eddystone-eid/eid-computation.md``: temporary key = AES-128(identity key,
    0x00*11 | 0xFF | 0x00 0x00 | counter >> 16 as u16 BE); EID = AES-128(temporary key,
    0x00*11 | K | counter with its K low bits cleared as u32 BE), first 8 bytes.
    Raises ValueError on a key that is not 16 bytes, K outside 0..15 or a counter outside 0..2**32-1.
    """
    if len(identity_key) != IDENTITY_KEY_BYTES:
        raise ValueError(f"an identity key is {IDENTITY_KEY_BYTES} bytes")
    if not 0 <= rotation_exponent <= MAX_ROTATION_EXPONENT:
        raise ValueError(f"the rotation exponent is 0..{MAX_ROTATION_EXPONENT}")
    if not 0 <= time_counter < COUNTER_MODULUS:
        raise ValueError("the time counter is a 32-bit unsigned integer")
    return _eid(bytes(identity_key), rotation_exponent, time_counter, {})


def _eid(identity_key: bytes, exponent: int, counter: int, temporary_keys: dict[int, bytes]) -> bytes:
    # ``temporary_keys`` caches by counter >> 16: the spec's temporary key changes only every 65536 s, so
    # the neighbouring periods of one key usually share it (one AES instead of two).
    high = counter >> 16
    temporary = temporary_keys.get(high)
    if temporary is None:
        temporary = _aes_block(identity_key, _ZERO_PAD + _TEMPORARY_KEY_SALT + high.to_bytes(2, "big"))
        temporary_keys[high] = temporary
    period_start = (counter >> exponent) << exponent
    block = _ZERO_PAD + bytes((exponent,)) + period_start.to_bytes(4, "big")
    return _aes_block(temporary, block)[:EID_BYTES]


def _aes_block(key: bytes, block: bytes) -> bytes:
    # ECB over exactly one block is the bare AES permutation the spec asks for; no mode's weakness applies.
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


@dataclass(slots=True, frozen=True)
class EidKey:
    """One opted-in shopper's EID parameters, as their app registered them with the cloud.

    The beacon's time counter at wall time t is ``(floor(t) + clock_offset_s) mod 2**32``: an app that starts
    its counter at 0 at registration time T registers ``clock_offset_s = -T``; one that uses unix time, 0.
    """

    shopper_id: str
    identity_key: bytes = field(repr=False)  # secret: never in a repr or a log
    rotation_exponent: int
    clock_offset_s: int = 0

    def __post_init__(self) -> None:
        if not self.shopper_id:
            raise ValueError("an EID key needs a shopper id")
        if not isinstance(self.identity_key, bytes):
            raise TypeError("an identity key is bytes")
        if len(self.identity_key) != IDENTITY_KEY_BYTES:
            raise ValueError(f"an identity key is {IDENTITY_KEY_BYTES} bytes")
        if not 0 <= self.rotation_exponent <= MAX_ROTATION_EXPONENT:
            raise ValueError(f"the rotation exponent is 0..{MAX_ROTATION_EXPONENT}")
        if not isinstance(self.clock_offset_s, int):
            raise TypeError("the clock offset is a whole number of seconds")

    def counter_at(self, wall: float) -> int:
        """The beacon's time counter at unix time ``wall``."""
        return (math.floor(wall) + self.clock_offset_s) % COUNTER_MODULUS


class ConsentSource(Protocol):
    """What the resolver needs of ``edge.identity.consent.ConsentStore``."""

    def has(self, shopper_id: str, purpose: Purpose) -> bool: ...

    def subscribe(self, callback: ConsentListener) -> Callable[[], None]: ...


@dataclass(slots=True)
class _Window:
    """The EIDs one active key has in the table: period index -> EID, and when the next period starts."""

    key: EidKey
    eids: dict[int, bytes]
    rollover_wall: float = 0.0
    generation: int = 0  # matches the key's one live heap entry; older entries are skipped


@dataclass(slots=True, frozen=True)
class EidStats:
    keys: int  # identity keys held (opted-in shoppers)
    active: int  # shoppers whose EIDs are in the table (consent granted now)
    table: int  # EIDs precomputed
    refreshes: int
    resolved: int
    unresolved: int
    collisions: int


class EidResolver:
    """Sighted EID -> opted-in shopper, by one lookup in a table of every active key's current EIDs.

    The table holds, for each active key, the EIDs of the current rotation period and ``neighbours`` periods
    on either side (clocks drift), so ``(2 * neighbours + 1) * active keys`` entries in all. ``refresh`` moves
    a key's window when its period rolls over; a heap ordered by rollover time makes a refresh that finds
    nothing due one comparison. With ``consents``, a key is active only while ``presence_ble`` is granted:
    a withdrawal removes the shopper's EIDs inside the consent listener, before the store's ``apply`` returns.
    Without ``consents`` every key added is active (the caller vouches for consent).
    """

    def __init__(self, clock: Clock, *, neighbours: int = 1, consents: ConsentSource | None = None) -> None:
        if not 0 <= neighbours <= MAX_NEIGHBOURS:
            raise ValueError(f"neighbours is 0..{MAX_NEIGHBOURS}")
        self._clock = clock
        self._neighbours = neighbours
        self._consents = consents
        self._keys: dict[str, EidKey] = {}  # every key held, active or not
        self._windows: dict[str, _Window] = {}  # the active keys
        self._table: dict[bytes, str] = {}
        self._heap: list[tuple[float, int, str]] = []  # (rollover wall, generation, shopper id)
        self._generation = 0
        self._last_refresh_wall = -math.inf
        self._refreshes = 0
        self._resolved = 0
        self._unresolved = 0
        self._collisions = 0
        self._unsubscribe = consents.subscribe(self._on_consent) if consents is not None else None

    # ----- the hot path -----
    def resolve(self, eid: bytes) -> str | None:
        """The shopper whose key produced ``eid`` now (within the neighbour window), or None."""
        shopper_id = self._table.get(eid)
        if shopper_id is None:
            self._unresolved += 1
            return None
        consents = self._consents
        if consents is not None and not consents.has(shopper_id, Purpose.PRESENCE_BLE):
            # The listener normally removed it already; checking on a hit costs one lookup and makes the
            # consent check at resolution time (DESIGN.md) hold even for a store that did not notify.
            self._deactivate(shopper_id)
            self._unresolved += 1
            return None
        self._resolved += 1
        return shopper_id

    # ----- keys -----
    def add_key(self, key: EidKey) -> bool:
        """Hold ``key`` (replacing the shopper's previous one); True if it resolves now (consent granted)."""
        self._deactivate(key.shopper_id)
        self._keys[key.shopper_id] = key
        return self._activate_if_allowed(key.shopper_id)

    def remove_shopper(self, shopper_id: str) -> bool:
        """Forget the shopper's key and EIDs; True if a key was held."""
        self._deactivate(shopper_id)
        return self._keys.pop(shopper_id, None) is not None

    def load(self, keys: Iterable[EidKey]) -> int:
        """Replace every held key with ``keys`` (a reloaded keys file); returns how many are active."""
        self._keys.clear()
        self._windows.clear()
        self._table.clear()
        self._heap.clear()
        for key in keys:
            self.add_key(key)
        _LOGGER.info("EID resolver: %d keys held, %d active", len(self._keys), len(self._windows))
        return len(self._windows)

    def close(self) -> None:
        """Stop listening to consent changes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ----- time -----
    def refresh(self, now_wall: float | None = None) -> int:
        """Move the windows of the keys whose period rolled over; returns how many keys moved."""
        now = self._clock.wall() if now_wall is None else now_wall
        if now < self._last_refresh_wall - CLOCK_STEP_BACK_S:
            _LOGGER.warning(
                "wall clock stepped back %.1f s; rebuilding EID windows", self._last_refresh_wall - now
            )
            self._last_refresh_wall = now
            for active in list(self._windows.values()):
                self._move(active, now)
            self._refreshes += len(self._windows)
            return len(self._windows)
        self._last_refresh_wall = max(self._last_refresh_wall, now)
        heap = self._heap
        moved = 0
        while heap and heap[0][0] <= now:
            _, generation, shopper_id = heapq.heappop(heap)
            window = self._windows.get(shopper_id)
            if window is not None and window.generation == generation:
                self._move(window, now)
                moved += 1
        self._refreshes += moved
        return moved

    def next_rollover(self) -> float | None:
        """Wall time at which the next ``refresh`` has work to do (for the caller's timer), or None."""
        heap = self._heap
        while heap:
            _, generation, shopper_id = heap[0]
            window = self._windows.get(shopper_id)
            if window is not None and window.generation == generation:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def stats(self) -> EidStats:
        return EidStats(
            keys=len(self._keys),
            active=len(self._windows),
            table=len(self._table),
            refreshes=self._refreshes,
            resolved=self._resolved,
            unresolved=self._unresolved,
            collisions=self._collisions,
        )

    # ----- internals -----
    def _on_consent(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        if purpose != Purpose.PRESENCE_BLE:
            return
        if granted:
            if shopper_id in self._keys and shopper_id not in self._windows:
                self._activate_if_allowed(shopper_id)
        elif self._deactivate(shopper_id):
            _LOGGER.debug("presence_ble withdrawn: EIDs of %s removed", shopper_ref(shopper_id))

    def _activate_if_allowed(self, shopper_id: str) -> bool:
        consents = self._consents
        if consents is not None and not consents.has(shopper_id, Purpose.PRESENCE_BLE):
            return False
        window = _Window(self._keys[shopper_id], {})
        self._windows[shopper_id] = window
        self._move(window, self._clock.wall())
        return True

    def _deactivate(self, shopper_id: str) -> bool:
        window = self._windows.pop(shopper_id, None)
        if window is None:
            return False
        table = self._table
        for eid in window.eids.values():
            if table.get(eid) == shopper_id:
                del table[eid]
        # Its heap entry stays until popped (skipped then); compact when the stale ones dominate.
        if len(self._heap) > 2 * len(self._windows) + 64:
            self._heap = [(w.rollover_wall, w.generation, s) for s, w in self._windows.items()]
            heapq.heapify(self._heap)
        return True

    def _move(self, window: _Window, now: float) -> None:
        # Only the periods entering the window are computed: a normal rollover costs one EID.
        key = window.key
        shopper_id = key.shopper_id
        exponent = key.rotation_exponent
        counter = key.counter_at(now)
        period = counter >> exponent
        periods = COUNTER_MODULUS >> exponent
        wanted = {(period + step) % periods for step in range(-self._neighbours, self._neighbours + 1)}
        table = self._table
        eids = window.eids
        for old in [p for p in eids if p not in wanted]:
            eid = eids.pop(old)
            if table.get(eid) == shopper_id:
                del table[eid]
        temporary_keys: dict[int, bytes] = {}
        for new in wanted.difference(eids):
            eid = _eid(key.identity_key, exponent, new << exponent, temporary_keys)
            eids[new] = eid
            owner = table.setdefault(eid, shopper_id)
            if owner != shopper_id:
                # Two keys giving the same 64-bit EID in the same window is ~2**-64 per pair; keep the first
                # owner rather than let either shopper be mistaken for the other.
                self._collisions += 1
        window.rollover_wall = math.floor(now) + ((period + 1) << exponent) - counter
        self._generation += 1
        window.generation = self._generation
        heapq.heappush(self._heap, (window.rollover_wall, window.generation, shopper_id))


class EidKeyFileError(Exception):
    """The EID keys file is unusable; the message names the file, the entry's index and the field."""


def load_eid_keys(path: Path | str) -> list[EidKey]:
    """Read and validate the keys file (``{"keys": [{shopper_id, identity_key, ...}]}``); see the docs."""
    path = Path(path)
    try:
        info = path.stat()
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise EidKeyFileError(f"{path}: {info.st_size} bytes, more than {MAX_KEY_FILE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise EidKeyFileError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if info.st_mode & 0o077:
        _LOGGER.warning(
            "%s holds identity keys but other users may read it (mode %o)", path, info.st_mode & 0o777
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EidKeyFileError(f"{path}: not UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the message never quotes the file (it holds keys).
        raise EidKeyFileError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise EidKeyFileError(f"{path}: not valid JSON (nested too deeply)") from None
    return parse_eid_keys(document, str(path))


def parse_eid_keys(document: Any, origin: str) -> list[EidKey]:
    """Validate a parsed keys document strictly; every problem names ``origin``, the index and the field."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise EidKeyFileError(f'{origin}: expected an object with a "keys" list')
    extra = sorted(set(document) - {"keys"})
    if extra:
        raise EidKeyFileError(f'{origin}: unknown field {extra[0]!r} (only "keys")')
    keys: list[EidKey] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(document["keys"]):
        where = f"{origin}: keys[{index}]"
        if not isinstance(item, dict):
            raise EidKeyFileError(f"{where}: expected an object")
        for name in item:
            if name not in _KEY_FIELDS:
                raise EidKeyFileError(f"{where}.{name}: unknown field (known: {', '.join(_KEY_FIELDS)})")
        for name in _KEY_FIELDS:
            if name not in item:
                raise EidKeyFileError(f"{where}.{name}: missing")
        shopper_id = item["shopper_id"]
        if not isinstance(shopper_id, str) or not 0 < len(shopper_id) <= MAX_SHOPPER_ID_CHARS:
            raise EidKeyFileError(
                f"{where}.shopper_id: expected a string of 1..{MAX_SHOPPER_ID_CHARS} characters"
            )
        if shopper_id in first_index:
            raise EidKeyFileError(
                f"{where}.shopper_id: {shopper_id} is already at keys[{first_index[shopper_id]}]"
            )
        first_index[shopper_id] = index
        hex_key = item["identity_key"]
        # The value is never echoed: it is the secret.
        if (
            not isinstance(hex_key, str)
            or len(hex_key) != 2 * IDENTITY_KEY_BYTES
            or not _HEX_DIGITS.issuperset(hex_key)
        ):
            raise EidKeyFileError(f"{where}.identity_key: expected {2 * IDENTITY_KEY_BYTES} hex characters")
        exponent = item["rotation_exponent"]
        if not _is_int(exponent) or not 0 <= exponent <= MAX_ROTATION_EXPONENT:
            raise EidKeyFileError(
                f"{where}.rotation_exponent: expected an integer 0..{MAX_ROTATION_EXPONENT}"
            )
        offset = item["clock_offset_s"]
        if not _is_int(offset) or not -COUNTER_MODULUS < offset < COUNTER_MODULUS:
            raise EidKeyFileError(f"{where}.clock_offset_s: expected an integer of seconds, |offset| < 2**32")
        keys.append(EidKey(shopper_id, bytes.fromhex(hex_key), exponent, offset))
    return keys


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)
