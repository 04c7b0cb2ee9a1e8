"""The decision record's parts: time-sortable decision ids and the candidate columns."""

from __future__ import annotations

import os
from typing import Final

from edge.events import Candidates

_COUNTER_MASK: Final = (1 << 42) - 1  # the 12 + 30 counter bits of rand_a and rand_b


class DecisionIds:
    """UUIDv7-layout ids (RFC 9562 "method 1"): 48-bit unix ms, then a counter under a random start.

    Ids sort by time, and within a millisecond by issue order; the random 32-bit node and counter start
    keep two processes (or a restart within the same millisecond) from colliding.
    """

    __slots__ = ("_counter", "_node")

    def __init__(self) -> None:
        self._node = int.from_bytes(os.urandom(4), "big")
        self._counter = int.from_bytes(os.urandom(5), "big") >> 2  # 38 bits, leaves room to count

    def next(self, at_wall: float) -> str:
        self._counter = (self._counter + 1) & _COUNTER_MASK
        millis = int(at_wall * 1000) & 0xFFFF_FFFF_FFFF
        rand_a = self._counter >> 30  # top 12 of the 42 counter bits
        rand_b = ((self._counter & 0x3FFF_FFFF) << 32) | self._node  # 30 counter bits + 32 node bits
        return f"{millis:012x}7{rand_a:03x}{(0b10 << 62) | rand_b:016x}"


def candidates_of(
    ids: tuple[str, ...], eligible: list[bool], scores: list[float], reasons: list[str]
) -> Candidates:
    """The decision's candidate columns (one entry per offer, in candidate order)."""
    return Candidates(ids, tuple(eligible), tuple(scores), tuple(reasons))
