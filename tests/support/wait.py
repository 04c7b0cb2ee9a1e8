"""Waiting in tests for a condition, never for a duration: the one polling helper (docs/testing.md).

``await until(condition)`` returns as soon as ``condition()`` is truthy; ``condition`` may be a plain function
or a coroutine function (a ledger or cloud query). ``until_blocking`` is the same for a test that is not
async and waits on another thread (the camera's capture thread). Both fail with an ``AssertionError`` that
names the condition (``what``, else its source line) and, if given, what ``detail()`` says at that moment.

Poll only what a component exposes as state (a counter, a list a handler appends to, a row count); where it
offers an event (``MqttLink.connected``) or a queue, wait on that instead. A test never sleeps to prove an
absence: it makes the thing that must not happen observable by something that must (a sentinel sent after
it, a check that has run since), waits for that, then asserts.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Final

# Generous against a loaded CI machine (two cores shared with the whole suite); a passing wait returns as
# soon as its condition holds, so only a failing test ever waits this long.
TIMEOUT_S: Final = 10.0
# Short against what tests wait for (a broker round trip is ~1 ms, a ledger commit a few), long enough that
# polling costs nothing next to the parts under test.
POLL_S: Final = 0.01
# An async condition is a query (the ledger, the reference cloud over HTTP): asked less often, so the
# asking does not crowd out the work it waits for on a loaded machine.
POLL_ASYNC_S: Final = 0.05

Condition = Callable[[], object]
AsyncCondition = Callable[[], Awaitable[object]]


async def until(
    condition: Condition | AsyncCondition,
    timeout: float = TIMEOUT_S,
    *,
    what: str | None = None,
    detail: Callable[[], object] | None = None,
    every: float | None = None,
) -> None:
    """Return once ``condition()`` (awaited if it returns an awaitable) is truthy; fail after ``timeout`` s.

    ``every``: seconds between looks; POLL_S, or POLL_ASYNC_S for an async condition.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        pause = POLL_S
        if inspect.isawaitable(result):
            result = await result
            pause = POLL_ASYNC_S
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(_timed_out(condition, timeout, what, detail))
        await asyncio.sleep(pause if every is None else every)


def until_blocking(
    condition: Condition,
    timeout: float = TIMEOUT_S,
    *,
    what: str | None = None,
    detail: Callable[[], object] | None = None,
    every: float = POLL_S,
) -> None:
    """``until`` for a test that is not async: block this thread until ``condition()`` is truthy."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(condition, timeout, what, detail))
        time.sleep(every)


def _timed_out(
    condition: Callable[[], object], timeout: float, what: str | None, detail: Callable[[], object] | None
) -> str:
    message = f"timed out after {timeout} s waiting for {what or _describe(condition)}"
    return message if detail is None else f"{message}; {detail()}"


def _describe(condition: Callable[[], object]) -> str:
    """The condition's own source line (a lambda's text), so a failure says what was awaited."""
    try:
        lines, number = inspect.getsourcelines(condition)
        where = inspect.getsourcefile(condition)
    except (OSError, TypeError):
        return repr(condition)
    return f"{lines[0].strip()} ({where}:{number})"
