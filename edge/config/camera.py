"""A ``[[cameras]]`` entry: source, rates, privacy masks, detector; apart from the camera code (no cv2)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A polygon in normalised image coordinates: (x, y) with 0,0 top-left and 1,1 bottom-right.
Point = tuple[float, float]


class CameraSettings(BaseModel):
    """One camera above a screen: where frames come from, how often each analysis runs, what is masked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Camera id (health, logs).")
    source: str = Field(
        min_length=1,
        description="A V4L2 device index ('0'), a device path ('/dev/video0'), an rtsp:// or http(s):// URL, "
        "or a video file (tests, demos).",
    )
    loop: bool = Field(default=False, description="Start a video file again at its end (tests, demos).")
    zone: str = Field(description="The zone the camera looks at: QR check-ins and counts belong to it.")
    qr_fps: float = Field(default=5.0, gt=0, le=60, description="QR decoding runs at most this often.")
    count_fps: float = Field(
        default=5.0, gt=0, le=60, description="Audience counting runs at most this often."
    )
    count_width: int = Field(
        default=320, ge=80, le=1920, description="Frames are scaled to this width before counting (speed)."
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Privacy masks: polygons in normalised coordinates (0..1); their pixels are blanked "
        "before any analysis (QR and counting alike).",
    )
    min_blob_fraction: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="A moving blob smaller than this share of the frame is not a person.",
    )
    track_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="A person not seen for this long has left (ends their dwell)."
    )
    detector_model: Path | None = Field(
        default=None,
        description="Optional person-detection ONNX model (counting only, never identification); "
        "off by default: moving blobs are counted instead.",
    )
    detector_threshold: float = Field(default=0.5, gt=0, lt=1, description="Detector score that counts.")
    silence_s: float = Field(
        default=5.0, gt=0, le=300, description="No frame for this long: the source is reopened."
    )
    reopen_max_s: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait between reopen attempts."
    )
    qr_hold_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="The same code seen again within this time is the same check-in.",
    )

    @field_validator("masks")
    @classmethod
    def _polygons(cls, value: list[list[Point]]) -> list[list[Point]]:
        for index, polygon in enumerate(value):
            if len(polygon) < 3:
                msg = f"mask {index}: a polygon needs at least 3 points"
                raise ValueError(msg)
            for x, y in polygon:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    msg = f"mask {index}: points are normalised coordinates in 0..1 (got {x}, {y})"
                    raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _source_kind(self) -> CameraSettings:
        if self.loop and not self.is_file:
            msg = "loop applies to video files only"
            raise ValueError(msg)
        return self

    @property
    def device_index(self) -> int | None:
        """The V4L2 index when ``source`` is one ('0', '1', ...)."""
        return int(self.source) if self.source.isdigit() else None

    @property
    def is_stream(self) -> bool:
        return self.source.startswith(("rtsp://", "rtsps://", "http://", "https://"))

    @property
    def is_file(self) -> bool:
        return self.device_index is None and not self.is_stream and not self.source.startswith("/dev/")
