"""Atomic file writes: a crash or a full disk never leaves half a file under the real name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facepad.errors import FacepadError


def check_output_folder(path: str | os.PathLike) -> Path:
    """Return `path` as a Path after checking that its parent folder exists.

    Raises FacepadError naming the missing folder, so that no command starts work whose
    result it cannot write.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FacepadError(f"output folder {parent} does not exist; create it or choose another path for {path.name}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place with os.replace.

    The temporary file keeps the suffix of `path` so that libraries choosing a format by
    extension (numpy, matplotlib, PIL) write the right one. On error it is removed.
    """
    path = check_output_folder(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        # mkstemp creates the file readable by its owner only. Give it the mode that a plain
        # open() would, so that others in the group can read the results.
        os.chmod(temp, 0o666 & ~_current_umask())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `path` atomically.

    With `fsync` the data reaches the disk before the rename, so a power cut cannot leave
    an empty file under the real name. Many small derived files (crops) may skip it.
    """
    with atomic_path(path) as temp:
        with open(temp, "wb") as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
