"""The camera flow's QR counters count one unit: showings (issue 18). A code held up in front of the camera is
decoded in many consecutive frames; ``qr_decoded`` counts those decodes, every other QR counter counts the
showing once, whether the code is a check-in that is accepted, refused, or not a token at all."""

from __future__ import annotations

import asyncio
from typing import cast

from edge.clock import ManualClock
from edge.config.camera import CameraSettings
from edge.flow.camera import CameraFlow
from edge.flow.checkin import ACCEPTED, Accepted, Refused
from edge.flow.zones import ZoneCounts
from edge.sources.camera.capture import CameraCapture
from tests.camera.scenes import token_text

FRAMES = 10  # a code held up for 2 s at qr_fps = 5
HOLD_S = 10.0


def _flow(outcome: Accepted | Refused) -> tuple[CameraFlow, ManualClock, list[str]]:
    settings = CameraSettings(id="cam", zone="cafe", source="scene.avi", qr_hold_s=HOLD_S)
    clock = ManualClock()
    calls: list[str] = []

    async def checkin(token: str, zone: str, source: str, seen: float, origin: str) -> Accepted | Refused:
        calls.append(token)
        return outcome

    # the counters under test never touch the zone counts; the capture is never started
    flow = CameraFlow(
        settings, clock, CameraCapture(settings, clock), checkin=checkin, counts=cast("ZoneCounts", None)
    )
    return flow, clock, calls


def _show(flow: CameraFlow, clock: ManualClock, text: str, frames: int = FRAMES) -> None:
    async def go() -> None:
        for _ in range(frames):
            clock.advance(0.2)
            await flow._qr_text(text, clock.monotonic())

    asyncio.run(go())


def test_a_code_that_is_not_a_token_counts_once_per_showing() -> None:
    flow, clock, calls = _flow(ACCEPTED)
    _show(flow, clock, "https://example.com/product/42")
    assert flow.counters["qr_decoded"] == FRAMES
    assert flow.counters["qr_not_a_token"] == 1
    assert flow.counters["qr_repeats"] == FRAMES - 1
    clock.advance(HOLD_S + 1)
    _show(flow, clock, "https://example.com/product/42")
    assert flow.counters["qr_not_a_token"] == 2
    assert calls == []


def test_refused_and_not_a_token_count_the_same_unit() -> None:
    refused, clock, calls = _flow(Refused("expired"))
    _show(refused, clock, token_text(1))
    other, other_clock, _ = _flow(ACCEPTED)
    _show(other, other_clock, "not a token")
    assert refused.counters["qr_refused"] == other.counters["qr_not_a_token"] == 1
    assert len(calls) == 1


def test_an_accepted_code_is_one_check_in() -> None:
    flow, clock, calls = _flow(ACCEPTED)
    _show(flow, clock, token_text(2))
    assert flow.counters["qr_checkins"] == 1
    assert len(calls) == 1
