"""Durable files: a new file flushed to disk, an atomic replace, a folder's fsync. Blocking: call from a thread.

A power cut after ``write_atomic`` returns leaves the new contents; during it, the old ones or the new ones,
never half of either. Used by the model store (``decide/lifecycle.py``) and the control state
(``control/snapshots.py``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

# Temp files start with this; an owner that finds some after a crash may remove them (no reader takes them).
TMP_PREFIX: Final = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename, a new or removed file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Create ``path`` (it must not exist) with ``data`` and fsync it; the caller fsyncs the folder.

    ``mode`` is filtered by the umask, as ``open`` does (0o666: what any new file gets).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data``: a fresh temp file beside it, fsync, rename, fsync of the folder.

    Raises ``OSError`` (disk full, read-only, permissions) with the old file untouched and no temp file left.
    """
    temp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        write_new(temp, data, mode=mode)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)
