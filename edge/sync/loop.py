"""One retry loop for every cloud task: do the work, idle until woken or a tick, back off on failure.

It never ends on a fault (only on cancellation): long outages must not kill sync, a known failure mode of
other gateways. Each failure is counted by reason; only the first of a run of failures is logged loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from edge.retry import backoff_delay
from edge.sync.client import CloudRefusedError, CloudUnavailableError

log = logging.getLogger(__name__)

# After a refusal (401/403/400: configuration) retry at the cap rather than hammer the cloud.
_REFUSED_ATTEMPT = 16
# Retry-After is honoured up to 15 minutes: longer than any rate-limit window a cloud or proxy uses, and
# short enough that a misconfigured proxy asking for "tomorrow" holds consent changes back 15 min, not a day.
RETRY_AFTER_MAX_S: Final = 900.0
# Up to 10% added: a fleet of stores told "Retry-After: 30" together must not come back in step.
RETRY_AFTER_JITTER: Final = 0.1

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class LoopState:
    failures: Counter[str] = field(default_factory=Counter)
    failing: bool = False
    last_success_mono: float | None = None
    last_error: str = ""
    last_delay_s: float = 0.0  # the wait before the latest retry
    retry_after: int = 0  # waits a Retry-After header set


class RetryLoop:
    def __init__(
        self,
        name: str,
        *,
        idle_s: float,
        retry_max_s: float,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self._idle_s = idle_s
        self._retry_max_s = retry_max_s
        self._rng = rng or random.Random()
        # Injected by tests that check the waits without spending them.
        self._sleep = sleep
        self._wake = asyncio.Event()
        self.state = LoopState()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, work: Callable[[], Awaitable[object]]) -> None:
        attempt = 0
        while True:
            self._wake.clear()
            retry_after: float | None = None
            try:
                await work()
            except CloudUnavailableError as error:
                self._failed(error.reason, str(error), attempt)
                retry_after = error.retry_after_s
            except CloudRefusedError as error:
                self._failed(error.reason, str(error), attempt, loud=True)
                attempt = max(attempt, _REFUSED_ATTEMPT)
                retry_after = error.retry_after_s
            except Exception as error:
                log.exception("cloud %s: unexpected failure", self.name)
                self._failed("internal", repr(error), attempt, loud=True)
            else:
                attempt = 0
                if self.state.failing:
                    log.info("cloud %s recovered", self.name)
                self.state.failing = False
                self.state.last_success_mono = time.monotonic()
                await self._idle(self._idle_s)
                continue
            delay = self._delay(attempt, retry_after)
            self.state.last_delay_s = delay
            await self._sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Our backoff; with a Retry-After, never less than it asked for (capped at RETRY_AFTER_MAX_S).

        Never less than our backoff either: a proxy answering ``Retry-After: 0`` must not get a busy loop.
        """
        backoff = backoff_delay(attempt, self._retry_max_s, self._rng)
        if retry_after is None:
            return backoff
        self.state.retry_after += 1
        asked = min(max(retry_after, 0.0), RETRY_AFTER_MAX_S)
        return max(backoff, asked * self._rng.uniform(1.0, 1.0 + RETRY_AFTER_JITTER))

    def _failed(self, reason: str, detail: str, attempt: int, *, loud: bool = False) -> None:
        self.state.failures[reason] += 1
        self.state.last_error = reason
        if loud or not self.state.failing:
            log.warning(
                "cloud %s failed (%s); retrying with backoff (attempt %d)", self.name, detail, attempt + 1
            )
        self.state.failing = True

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
