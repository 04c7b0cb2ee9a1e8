"""``edge-gateway camera test``: the installer's check of a camera, on a video the test makes.

It must report fps, people and QR check-ins; with the store's config it tells a valid code from a forged
one; and it never prints a token (only a short hash of it), whatever the camera shows.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edge import cli
from edge.identity import fingerprint
from edge.identity.keys import generate_keypair
from edge.tools.camera import run_test
from tests.camera.scenes import Walker, place, qr_image, walker_frames
from tests.camera.videos import corrupt_copy, numbered_frames, write_video
from tests.support.store import StoreKit, make_store

FPS = 20


def _video(path: Path, codes: list[str], seconds: float = 3.0) -> Path:
    """Two people walk in after the counter's warm-up; each code in ``codes`` is held up in turn for 0.5 s.

    (Someone already standing there when the camera starts is background until they move: the scene lets the
    counter learn the empty store first, as a camera mounted before opening does.)
    """
    walkers = [
        Walker(enter=12, stand_at=0.3, stand=40),
        Walker(enter=16, stand_at=0.7, stand=30, from_left=False),
    ]
    images = [qr_image(code, module_px=4) for code in codes]
    frames = []
    for index, (scene, _truth) in enumerate(walker_frames(walkers, int(seconds * FPS), shape=(480, 640))):
        slot, offset = divmod(index - 10, 15)
        shown = index >= 10 and slot < len(images) and offset < 10
        frames.append(place(scene, images[slot], center=(320, 240), angle=3.0) if shown else scene)
    return write_video(path, frames, FPS)


@pytest.fixture
def store(tmp_path: Path) -> StoreKit:
    return make_store(tmp_path / "store", port=1883)  # the tool never connects to the broker


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().out


def test_without_config_it_reports_fps_people_and_check_in_shaped_codes(
    tmp_path: Path, store: StoreKit, capsys: pytest.CaptureFixture[str]
) -> None:
    token = store.token("p-full")
    video = _video(tmp_path / "cam.avi", [token, "https://example.com/product/42"])
    code, out = _run(capsys, ["camera", "test", "--source", str(video), "--seconds", "4"])
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("t=") and " fps " in line for line in lines), out
    summary = [line for line in lines if line.startswith("summary:")]
    assert len(summary) == 1, out
    assert "QR: 1 check-ins" in summary[0], out
    assert "1 other codes (never shown)" in summary[0], out
    assert f"sha256 {fingerprint(token)}" in out
    assert "not verified" in out
    assert token not in out
    assert "example.com" not in out  # other codes are counted, never echoed


def test_with_the_store_config_a_forged_code_is_refused_and_a_real_one_accepted(
    tmp_path: Path, store: StoreKit, capsys: pytest.CaptureFixture[str]
) -> None:
    forger, _public = generate_keypair()
    real, forged = store.token("p-full"), store.token("p-full", key=forger)
    video = _video(tmp_path / "cam.avi", [forged, real])
    code, out = _run(
        capsys,
        ["camera", "test", "--source", str(video), "--seconds", "4", "--config", str(store.config_path)],
    )
    assert code == 0
    assert f"a valid check-in (sha256 {fingerprint(real)})" in out
    assert f"refused: bad_signature (sha256 {fingerprint(forged)})" in out, out
    assert real not in out and forged not in out
    summary = next(line for line in out.splitlines() if line.startswith("summary:"))
    assert "QR: 1 check-ins, 1 refused" in summary


def test_totals_count_people_and_frames(tmp_path: Path, store: StoreKit) -> None:
    video = _video(tmp_path / "cam.avi", [])
    out = io.StringIO()
    totals = run_test(str(video), 4.0, out)
    assert totals["frames"] > 0
    assert totals["frames_analysed"] > 0
    assert totals["qr_checkins"] == 0
    assert totals["people_max"] == 2
    assert "(at most 2)" in out.getvalue(), out.getvalue()


def test_a_source_that_cannot_open_is_reported_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, ["camera", "test", "--source", str(tmp_path / "missing.avi"), "--seconds", "1"])
    assert code == 1
    assert "summary: 0 frames" in out, out
    assert "no frame read from" in out


def test_a_damaged_video_is_reported_truthfully(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = write_video(tmp_path / "clip.avi", numbered_frames(60), 60.0)
    broken = corrupt_copy(video, tmp_path / "damaged.avi")
    out = io.StringIO()
    totals = run_test(str(broken), 3.0, out)
    assert totals["corrupt"] >= 15, out.getvalue()
    assert totals["frames"] + totals["corrupt"] + totals["read_failures"] <= 60
    assert f"{totals['corrupt']} corrupt (decoded with errors" in out.getvalue()
    assert "frames were damaged or unreadable" in out.getvalue()


def test_a_missing_file_and_an_undecodable_one_read_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(bytes(range(256)) * 64)
    _, missing_out = _run(
        capsys, ["camera", "test", "--source", str(tmp_path / "missing.avi"), "--seconds", "1"]
    )
    _, garbage_out = _run(capsys, ["camera", "test", "--source", str(garbage), "--seconds", "1"])
    assert "the video file is missing" in missing_out
    assert "FFmpeg could not open it" in garbage_out
    assert "the video file is missing" not in garbage_out
