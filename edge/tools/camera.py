"""Installer tool: ``edge-gateway camera test --source SRC [--seconds N]``: is this camera good enough?

It opens the source exactly as the gateway would, runs QR decoding and counting on every frame it can for
N seconds, and prints once a second: capture fps, frames skipped, people in view, and QR codes decoded
(check-in shaped or not; with ``--config``, whether they verify against the store's token keys). It never
shows, saves or prints a frame or a token: a token is named only by the first characters of its hash.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TextIO

from edge.clock import SystemClock
from edge.config import GatewaySettings
from edge.config.camera import CameraSettings
from edge.flow.camera import looks_like_token
from edge.identity import TokenVerifier, fingerprint, load_public_keys
from edge.identity.tokens import Rejection
from edge.sources.camera.audience import Audience
from edge.sources.camera.capture import CameraCapture, not_opened_reason
from edge.sources.camera.qr import QrDeduper, QrReader


def run_test(
    source: str, seconds: float, out: TextIO, *, settings: GatewaySettings | None = None, loop: bool = False
) -> Counter[str]:
    """Watch ``source`` for ``seconds``; print a line a second and a summary; return the totals."""
    clock = SystemClock()
    zone = settings.zones[0].id if settings is not None else "test"
    camera = CameraSettings(id="camera-test", source=source, zone=zone, loop=loop)
    verifier = None
    if settings is not None:
        keys = load_public_keys(settings.identity.public_key_files, settings.identity.public_key_env)
        verifier = TokenVerifier(keys, settings.store.id, clock)
    capture = CameraCapture(camera, clock)
    reader, audience, dedupe = QrReader(), Audience(camera, clock), QrDeduper(camera.qr_hold_s, clock)
    totals: Counter[str] = Counter()
    people = 0
    capture.start()
    try:
        started = next_line = time.monotonic()
        last_seq: int | None = None
        while (now := time.monotonic()) - started < seconds:
            frame = capture.wait(last_seq, 0.5)
            if frame is not None:
                last_seq = frame.seq
                totals["frames_analysed"] += 1
                people = audience.update(frame.image, clock.monotonic()).people
                totals["people_max"] = max(totals["people_max"], people)
                for text in reader.read(frame.image):
                    _qr(text, dedupe, verifier, totals, out)
            if now >= next_line:
                next_line += 1.0
                stats = capture.stats()
                print(
                    f"t={now - started:4.0f}s {stats.state:<12} fps {stats.fps:5.1f} skipped {stats.skipped:5d} "
                    f"corrupt {stats.corrupt:4d} failed reads {stats.read_failures:4d} "
                    f"people {people:2d} qr check-ins {totals['qr_checkins']}",
                    file=out,
                    flush=True,
                )
    finally:
        capture.stop()
    stats = capture.stats()
    print(
        f"summary: {stats.frames} frames ({stats.fps:.1f} fps at the end), {stats.skipped} skipped, "
        f"{stats.corrupt} corrupt (decoded with errors: skipped, never analysed), {stats.read_failures} failed "
        f"reads, {stats.reopens} reopens; analysed {totals['frames_analysed']}; "
        f"people in view at the end {people} (at most {totals['people_max']}); QR: {totals['qr_checkins']} check-ins, "
        f"{totals['qr_refused']} refused, {totals['qr_not_a_token']} other codes (never shown)",
        file=out,
        flush=True,
    )
    totals["frames"] = stats.frames
    totals["corrupt"] = stats.corrupt
    totals["read_failures"] = stats.read_failures
    if stats.frames == 0:
        why = not_opened_reason(camera) if stats.corrupt == 0 else "every frame read was damaged"
        print(
            f"no frame read from {source}: {why} (state {stats.state}, {stats.errors} errors, "
            f"{stats.corrupt} corrupt, {stats.read_failures} failed reads): check the device index, URL or "
            "path and its permissions",
            file=out,
            flush=True,
        )
    elif stats.corrupt or stats.read_failures:
        print(
            f"warning: {stats.corrupt + stats.read_failures} of {stats.frames + stats.corrupt + stats.read_failures}"
            " frames were damaged or unreadable: check the cable, the network or the file",
            file=out,
            flush=True,
        )
    return totals


def _qr(
    text: str, dedupe: QrDeduper, verifier: TokenVerifier | None, totals: Counter[str], out: TextIO
) -> None:
    if not dedupe.fresh(text):
        return  # the same code in the next frames: one sighting
    if not looks_like_token(text):
        totals["qr_not_a_token"] += 1
        return
    if verifier is None:
        totals["qr_checkins"] += 1
        print(
            f"  qr: a check-in shaped code (sha256 {fingerprint(text)}; not verified: no --config)", file=out
        )
        return
    verified = verifier.verify(text)
    if isinstance(verified, Rejection):
        totals["qr_refused"] += 1
        print(f"  qr: a check-in code refused: {verified.reason} (sha256 {fingerprint(text)})", file=out)
        return
    totals["qr_checkins"] += 1
    print(f"  qr: a valid check-in (sha256 {fingerprint(text)})", file=out)
