"""Synthetic camera scenes for the camera tests and benchmarks: QR codes and walking people, no files.

Everything is generated from a seed, so a failing test replays exactly:

- ``token_text(seed)``: a text shaped and sized like a signed check-in JWT (~375 characters of base64url).
- ``qr_image(text, module_px)``: the QR code of a text, black on white with its quiet zone (grey, uint8).
- ``background(shape, seed)``: a store-like BGR scene (shelves, products, a lit wall), or a plain bright wall.
- ``place(frame, image, center, scale, angle, perspective)``: an image (a code) pasted into a frame after an
  in-plane rotation and an optional 3D tilt seen through a pinhole camera.
- ``noisy(frame, sigma, rng)``: sensor noise.
- ``Walker`` and ``walker_frames(...)``: people (dark head + body shapes) who walk in from a side, stand,
  and walk out, on a static background with noise; each frame comes with the number of people in view.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import segno

Image = np.ndarray

VGA = (480, 640)  # the QR check-in resolution (DESIGN.md)
QVGA = (240, 320)  # the counting resolution (DESIGN.md)
NOISE_BANK = 8  # noise fields a walker scene draws from
RENDER_PX = 8  # codes are drawn this many pixels per module, then scaled down by ``place``


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_text(seed: int = 0, claims_bytes: int = 170) -> str:
    """A compact-JWS-shaped text of realistic size: header.claims.signature, base64url, ~375 chars.

    The claims part is random bytes (a real token's JSON claims compress no better in a QR code), the
    signature 64 bytes like Ed25519. Not a valid token: the camera code only has to read it back exactly.
    """
    rng = random.Random(seed)
    header = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": f"k{seed}"}).encode())
    return f"{header}.{_b64(rng.randbytes(claims_bytes))}.{_b64(rng.randbytes(64))}"


def qr_image(text: str, module_px: int = RENDER_PX, border: int = 4, error: str = "m") -> Image:
    """The QR code of ``text``: 0 (black) modules on 255 (white), ``border`` modules of quiet zone.

    Rendered crisp at ``module_px``; ``place(..., scale=px / RENDER_PX)`` then gives modules of ``px``
    pixels, fractional sizes included, with the soft edges of a real camera.
    """
    code = segno.make_qr(text, error=error)
    modules = np.array(code.matrix, dtype=np.uint8)
    modules = np.pad(modules, border)
    image = np.where(modules == 1, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(image, module_px, axis=0), module_px, axis=1)


def qr_modules(text: str, error: str = "m") -> int:
    """How many modules wide the code of ``text`` is (without the quiet zone)."""
    return int(segno.make_qr(text, error=error).symbol_size(scale=1, border=0)[0])


def background(shape: tuple[int, int] = VGA, seed: int = 0, *, plain: bool = False) -> Image:
    """A static BGR scene of ``shape`` (h, w).

    ``plain=False``: a store: a lit wall with a gradient, shelves with coloured products, edges and texture
    that give a QR detector real work. ``plain=True``: a bright wall with a soft gradient (detector tests).
    """
    h, w = shape
    rng = np.random.default_rng(seed)
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    wall = 200.0 - 30.0 * ys - 15.0 * xs
    frame = np.repeat(wall[:, :, None], 3, axis=2)
    frame[..., 0] -= 10.0  # a warm white
    if plain:
        return np.clip(frame, 0, 255).astype(np.uint8)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    for shelf in range(4):
        top = int(h * (0.08 + 0.22 * shelf))
        cv2.rectangle(frame, (0, top), (w, top + max(2, h // 60)), (70, 80, 90), -1)
        x = int(rng.integers(0, max(1, w // 20)))
        while x < w:
            pw = int(rng.integers(max(3, w // 40), max(4, w // 12)))
            ph = int(rng.integers(max(3, h // 30), max(4, h // 7)))
            color = tuple(int(c) for c in rng.integers(30, 230, 3))
            cv2.rectangle(frame, (x, top - ph), (x + pw, top - 1), color, -1)
            if rng.random() < 0.5:  # a label
                cv2.rectangle(frame, (x + 2, top - ph // 2), (x + pw - 2, top - ph // 3), (240, 240, 240), -1)
            x += pw + int(rng.integers(1, max(2, w // 60)))
    grain = rng.normal(0.0, 4.0, frame.shape).astype(np.float32)
    frame = cv2.GaussianBlur(frame, (3, 3), 0).astype(np.float32) + grain
    return np.clip(frame, 0, 255).astype(np.uint8)


def noisy(frame: Image, sigma: float, rng: np.random.Generator) -> Image:
    """``frame`` plus Gaussian sensor noise of ``sigma`` grey levels (a new array)."""
    if sigma <= 0:
        return frame.copy()
    noise = rng.normal(0.0, sigma, frame.shape).astype(np.float32)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _tilt_quad(w: float, h: float, yaw_deg: float, pitch_deg: float, focal: float) -> np.ndarray:
    """Corners of a w x h plane centred on the optical axis, turned by yaw/pitch, seen by a pinhole camera.

    The plane's centre stays at the same distance (``focal``), so its apparent size at the centre is kept.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    rot_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rot_x = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]])
    turned = corners @ (rot_x @ rot_y).T
    depth = turned[:, 2] + focal
    return np.stack([turned[:, 0] * focal / depth, turned[:, 1] * focal / depth], axis=1)


def place(
    frame: Image,
    image: Image,
    center: tuple[float, float],
    scale: float = 1.0,
    angle: float = 0.0,
    perspective: tuple[float, float] | None = None,
) -> Image:
    """A copy of ``frame`` with ``image`` pasted at ``center`` (pixels, x, y).

    ``scale`` resizes the image, ``angle`` rotates it in the image plane (degrees, counter-clockwise), and
    ``perspective=(yaw, pitch)`` tilts it away from the camera (degrees about the vertical and horizontal
    axes) as a pinhole camera with a ~60 degree field of view would see it. Bilinear resampling, so small
    codes get the soft edges a real lens gives them.
    """
    out = frame.copy()
    fh, fw = frame.shape[:2]
    w, h = image.shape[1] * scale, image.shape[0] * scale
    # Resample to the final size first with area averaging (a lens integrates light over a pixel), so the
    # warp below is close to 1:1 and adds at most a pixel of blur, not a smear of up-sampled modules.
    image = cv2.resize(image, (max(1, round(w)), max(1, round(h))), interpolation=cv2.INTER_AREA)
    ih, iw = image.shape[:2]
    src = np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], dtype=np.float32) - 0.5
    if perspective is None:
        quad = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    else:
        quad = _tilt_quad(w, h, perspective[0], perspective[1], focal=0.87 * max(fw, fh))
    theta = math.radians(-angle)  # image y points down: a counter-clockwise turn on screen
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    dst = (quad @ rot.T + np.array(center) - 0.5).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if out.ndim == 2:
        colour = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    warped = cv2.warpPerspective(colour, matrix, (fw, fh), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(
        np.full((ih, iw), 255, np.uint8), matrix, (fw, fh), flags=cv2.INTER_LINEAR
    ).astype(np.float32)
    alpha = (cover / 255.0)[..., None] if out.ndim == 3 else cover / 255.0
    blended = out.astype(np.float32) * (1.0 - alpha) + warped.astype(np.float32) * alpha
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class Walker:
    """One synthetic person: walks in from a side at ``enter``, stands at ``stand_at``, walks out.

    Positions are normalised (0..1 of the frame width/height); ``speed`` is a share of the frame width per
    frame; ``height`` the person's share of the frame height. ``shade`` is the BGR colour of their clothes.
    """

    enter: int
    stand_at: float = 0.5
    stand: int = 20
    from_left: bool = True
    speed: float = 0.04
    y: float = 0.55
    height: float = 0.6
    shade: tuple[int, int, int] = (40, 45, 60)

    @property
    def width(self) -> float:
        """Body width as a share of the frame height (multiply by h/w for a share of the width)."""
        return 0.3 * self.height

    def x_at(self, frame: int, aspect: float) -> float | None:
        """Normalised x of the centre at ``frame``, or None before they appear / after they are gone.

        ``aspect`` is width/height of the frame (the body's width is set by the frame height).
        """
        half = self.width / aspect / 2
        start = -half if self.from_left else 1.0 + half
        direction = 1.0 if self.from_left else -1.0
        walk_in = abs(self.stand_at - start) / self.speed
        t = frame - self.enter
        if t < 0:
            return None
        if t <= walk_in:
            return start + direction * self.speed * t
        if t <= walk_in + self.stand:
            return self.stand_at
        x = self.stand_at + direction * self.speed * (t - walk_in - self.stand)
        if x < -half or x > 1.0 + half:
            return None
        return x

    def standing(self, frame: int, aspect: float) -> bool:
        half = self.width / aspect / 2
        start = -half if self.from_left else 1.0 + half
        walk_in = abs(self.stand_at - start) / self.speed
        t = frame - self.enter
        return walk_in < t <= walk_in + self.stand


def draw_person(frame: Image, x: float, walker: Walker) -> None:
    """Draw ``walker`` centred at normalised ``x`` into ``frame`` (in place): a head and a rounded body."""
    fh, fw = frame.shape[:2]
    ph = walker.height * fh
    pw = walker.width * fh
    cx, cy = x * fw, walker.y * fh
    top = cy - ph / 2
    head_r = round(ph * 0.09)
    skin = (60, 80, 110)
    cv2.circle(frame, (round(cx), round(top + head_r)), head_r, skin, -1, cv2.LINE_AA)
    body_top = top + 2 * head_r
    axes = (round(pw / 2), round((cy + ph / 2 - body_top) / 2))
    centre = (round(cx), round((body_top + cy + ph / 2) / 2))
    cv2.ellipse(frame, centre, axes, 0, 0, 360, walker.shade, -1, cv2.LINE_AA)
    shoulders = (round(cx - pw / 2), round(body_top), round(cx + pw / 2), round(cy))
    cv2.rectangle(frame, shoulders[:2], shoulders[2:], walker.shade, -1)


def in_view(walkers: Sequence[Walker], frame: int, aspect: float) -> int:
    """The truth: how many walkers have their centre inside the frame at ``frame``."""
    count = 0
    for walker in walkers:
        x = walker.x_at(frame, aspect)
        if x is not None and 0.0 <= x <= 1.0:
            count += 1
    return count


def walker_frames(
    walkers: Sequence[Walker],
    frames: int,
    shape: tuple[int, int] = QVGA,
    seed: int = 0,
    *,
    noise: float = 2.0,
    plain: bool = False,
    light: Callable[[int], float] | None = None,
) -> Iterator[tuple[Image, int]]:
    """``frames`` BGR frames of ``walkers`` over one static ``background``, each with the true count.

    ``noise`` is the sensor noise (grey levels); ``light(i)`` an optional global brightness gain for frame
    ``i`` (a lighting change is a step in it). Frames are generated lazily: a long scene costs no memory.
    """
    h, w = shape
    aspect = w / h
    scene = background(shape, seed, plain=plain)
    rng = np.random.default_rng(seed + 1)
    # Drawing 230k normal numbers per frame would cost more than the counting under test: frames take
    # their noise from a bank of NOISE_BANK fields, picked at random (a background model sees fresh noise).
    bank = [rng.standard_normal((h, w, 3), dtype=np.float32) * noise for _ in range(NOISE_BANK)]
    for index in range(frames):
        frame = scene.copy()
        for walker in walkers:
            x = walker.x_at(index, aspect)
            if x is not None:
                draw_person(frame, x, walker)
        if light is not None:
            gain = light(index)
            if gain != 1.0:
                frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        if noise > 0:
            frame = cv2.add(frame, bank[int(rng.integers(NOISE_BANK))], dtype=cv2.CV_8U)
        yield frame, in_view(walkers, index, aspect)
