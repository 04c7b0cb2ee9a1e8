"""A camera that is down is in gateway/health's ``alerts`` (issue 18), like a missing beacon: it turns
/healthz to 503 with the reason ``cameras_silent``, and names the camera, never its source."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edge.control.health import HealthReport
from edge.sources.camera.capture import CameraState
from tests.control.test_metrics import health_report


def _with_camera(state: CameraState, age: float | None, silence_s: float = 5.0) -> HealthReport:
    healthy = health_report()
    camera = healthy.cameras[0]
    capture = replace(camera.capture, state=state, last_frame_age_s=age)
    return replace(healthy, cameras=(replace(camera, capture=capture, silence_s=silence_s),))


@pytest.mark.parametrize(
    ("state", "age", "silent"),
    [
        (CameraState.STREAMING, 0.07, False),
        (CameraState.STREAMING, 4.9, False),
        (CameraState.STREAMING, 5.0, True),  # no frame for silence_s: the watchdog is about to reopen it
        (CameraState.RECONNECTING, None, True),  # never opened (unplugged, refused, missing file)
        (CameraState.RECONNECTING, 30.0, True),
        (CameraState.OPENING, None, False),
        (CameraState.ENDED, 60.0, False),  # a video file without loop that played to its end
        (CameraState.STOPPED, 60.0, False),
    ],
)
def test_a_silent_camera_is_an_alert(state: CameraState, age: float | None, silent: bool) -> None:
    report = _with_camera(state, age)
    assert (report.alerts == ["cameras_silent: front"]) is silent
    assert ("cameras_silent" in report.unhealthy_reasons()) is silent


def test_the_camera_s_own_silence_s_is_the_limit() -> None:
    assert _with_camera(CameraState.STREAMING, 20.0, silence_s=30.0).alerts == []
    assert _with_camera(CameraState.STREAMING, 30.0, silence_s=30.0).alerts == ["cameras_silent: front"]
