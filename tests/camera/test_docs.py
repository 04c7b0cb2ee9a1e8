"""docs/camera.md's `[[cameras]]` table lists every key of the schema with its default (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from edge.config.camera import CameraSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "camera.md"


def _default(name: str) -> str:
    field = CameraSettings.model_fields[name]
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"  # type: ignore[call-arg]
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "none"
    value = field.default
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def test_every_camera_key_is_in_the_table_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|", DOC.read_text(), flags=re.MULTILINE))
    for name in CameraSettings.model_fields:
        assert name in rows, f"docs/camera.md: no row for `{name}`"
        assert rows[name] == _default(name), f"`{name}`: docs say {rows[name]}, the schema {_default(name)}"
