"""Durable writes (edge/fsutil.py): the new contents or the old, a private mode kept, no temp file left."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.fsutil import TMP_PREFIX, write_atomic, write_new


def test_write_atomic_replaces_the_contents_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"old", mode=0o600)
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600  # the umask can only take bits away
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "current"
    target.mkdir()  # a rename onto a non-empty folder fails after the temp file was written
    (target / "keep").write_bytes(b"old")
    with pytest.raises(OSError):  # IsADirectoryError, or ENOTEMPTY, by platform
        write_atomic(target, b"new")
    assert (target / "keep").read_bytes() == b"old"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(TMP_PREFIX)]


def test_write_new_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    write_new(target, b"first")
    with pytest.raises(FileExistsError):
        write_new(target, b"second")
    assert target.read_bytes() == b"first"
