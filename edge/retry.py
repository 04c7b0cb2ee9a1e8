"""Retry timing shared by every link to the outside (broker, cloud): capped exponential backoff with jitter."""

from __future__ import annotations

import random
from typing import Final

BACKOFF_BASE_S: Final = 0.25


def backoff_delay(attempt: int, cap_s: float, rng: random.Random, *, base_s: float = BACKOFF_BASE_S) -> float:
    """Capped exponential backoff with jitter in [50%, 100%] so a fleet does not retry in step."""
    ceiling = min(cap_s, base_s * float(2 ** min(attempt, 16)))
    return ceiling * rng.uniform(0.5, 1.0)
