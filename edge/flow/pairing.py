"""Kiosk pairing: each kiosk (a ``ui = true`` display) shows a short-lived code a shopper's app scans.

The code is random (``secrets``), rotates every ``pairing_rotate_s`` seconds of that display, and is published
retained on ``{root}/display/{id}/pairing`` (only the gateway writes it; that display's user reads it). The
app's backend mints a check-in token with a ``display`` claim (the kiosk) and a ``pairing`` claim (the code it
scanned); the check-in is accepted for that kiosk only while the code is its current or previous one, and a
code serves one check-in: once used, the kiosk gets a new code at once (docs/identity.md "Kiosk pairing").
Codes live in memory only: a restart gives every kiosk a new one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlencode

from edge.clock import Clock, iso_utc
from edge.transport.topics import Topics

# Letters and digits a person cannot confuse when the app falls back to typing the code (no 0/O, 1/I/L).
ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_CHARS: Final = 8  # 31^8 ≈ 8.5e11: not guessable within one code's life (a check-in token per guess)
SCHEME: Final = "edgegw:pair"

PublishFn = Callable[[str, bytes, bool], None]


class PairingRefusal(StrEnum):
    """Why a kiosk pairing was refused (all counted as ``checkin.bad_pairing``)."""

    NOT_A_KIOSK = "not_a_kiosk"
    WRONG_ZONE = "wrong_zone"
    WRONG_CODE = "wrong_code"
    MALFORMED = "malformed"


@dataclass(slots=True)
class _Kiosk:
    display_id: str
    zone: str
    rotate_s: float
    current: str
    previous: str | None
    rotate_at_mono: float


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))


class KioskPairing:
    """The pairing codes of every kiosk: rotated by the timer, published retained, checked and used once."""

    def __init__(
        self,
        kiosks: Mapping[str, tuple[str, float]],
        *,
        store_id: str,
        topics: Topics,
        publish: PublishFn,
        clock: Clock,
        make_code: Callable[[], str] = new_code,
    ) -> None:
        """``kiosks``: display id -> (its zone, how often its code rotates in seconds)."""
        self._store_id = store_id
        self._topics = topics
        self._publish = publish
        self._clock = clock
        self._make_code = make_code
        now = clock.monotonic()
        self._kiosks = {
            display_id: _Kiosk(display_id, zone, rotate_s, make_code(), None, now + rotate_s)
            for display_id, (zone, rotate_s) in kiosks.items()
        }
        # Pairings accepted and refused (by reason) since the start: health and tests.
        self.accepted = 0
        self.refused: dict[PairingRefusal, int] = {}

    def topic(self, display_id: str) -> str:
        return f"{self._topics.root}/display/{display_id}/pairing"

    def kiosks(self) -> frozenset[str]:
        return frozenset(self._kiosks)

    def current(self, display_id: str) -> str | None:
        kiosk = self._kiosks.get(display_id)
        return None if kiosk is None else kiosk.current

    def publish_all(self) -> None:
        for kiosk in self._kiosks.values():
            self._announce(kiosk)

    def tick(self) -> None:
        """Timer work: rotate every code whose time is up (the previous one stays valid one more period)."""
        now = self._clock.monotonic()
        for kiosk in self._kiosks.values():
            if now >= kiosk.rotate_at_mono:
                self._rotate(kiosk, keep_previous=True, now=now)

    def check(self, display: object, code: object, zone: str) -> PairingRefusal | None:
        """None if ``code`` is ``display``'s current or previous code and the check-in is in its zone."""
        if not isinstance(display, str) or not isinstance(code, str):
            return self._refuse(PairingRefusal.MALFORMED)
        kiosk = self._kiosks.get(display)
        if kiosk is None:
            return self._refuse(PairingRefusal.NOT_A_KIOSK)
        if kiosk.zone != zone:
            return self._refuse(PairingRefusal.WRONG_ZONE)
        # Constant-time comparisons: the code is a secret for as long as it is valid.
        matches = secrets.compare_digest(code.encode(), kiosk.current.encode())
        if kiosk.previous is not None:
            matches |= secrets.compare_digest(code.encode(), kiosk.previous.encode())
        if not matches:
            return self._refuse(PairingRefusal.WRONG_CODE)
        return None

    def use(self, display_id: str) -> None:
        """A pairing was accepted: its code (and the previous one) serve no other check-in; a new code now."""
        self.accepted += 1
        self._rotate(self._kiosks[display_id], keep_previous=False, now=self._clock.monotonic())

    def _refuse(self, reason: PairingRefusal) -> PairingRefusal:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    def _rotate(self, kiosk: _Kiosk, *, keep_previous: bool, now: float) -> None:
        kiosk.previous = kiosk.current if keep_previous else None
        kiosk.current = self._make_code()
        kiosk.rotate_at_mono = now + kiosk.rotate_s
        self._announce(kiosk)

    def _announce(self, kiosk: _Kiosk) -> None:
        query = urlencode({"store": self._store_id, "display": kiosk.display_id, "code": kiosk.current})
        body = {
            "v": 1,
            "ts": iso_utc(self._clock.wall()),
            "display": kiosk.display_id,
            "code": kiosk.current,
            "url": f"{SCHEME}?{query}",
            "rotate_s": kiosk.rotate_s,
        }
        self._publish(self.topic(kiosk.display_id), json.dumps(body, separators=(",", ":")).encode(), True)
