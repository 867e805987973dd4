"""Writing files: the one place for atomic writes (temp file, fsync, rename) and JSON outputs.

``atomic_write(path, write)`` lets ``write(tmp)`` fill a temp file beside ``path``, fsyncs it and
renames it onto ``path``: a reader sees the old file or the new one, never half of one, and a
crash leaves no partial output. ``write_json`` writes the pipeline's JSON outputs that way.

``temp_file_beside(path)`` creates that temp file with the mode the umask allows.
``tempfile.mkstemp`` alone would create it with mode 0600, and the rename would keep that mode:
a team sharing a machine or a DVC cache could not read the outputs. ``with_path`` adds the file
name to an OSError that lacks it, so that a full disk can be reported with its path.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file_beside(path: str | os.PathLike, suffix: str = ".tmp") -> str:
    """An empty temp file ``.<name>.*<suffix>`` in ``path``'s folder, mode ``0o666 & ~umask``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return tmp


def with_path(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` naming the file it concerns (``file.write`` and pyarrow errors name none)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp"
) -> Path:
    """``write(tmp)`` to a temp file beside ``path`` (created empty; ``suffix`` ends its name),
    fsync it, rename it onto ``path``. On any failure the temp file is removed, ``path`` is left
    as it was, and an OSError names ``path``. Creates ``path``'s folder. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(path, suffix)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise with_path(exc, path) from None
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_text(data: Any, sort_keys: bool = False) -> str:
    """The pipeline's JSON style: indented by 2, one trailing newline."""
    return json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON (indent 2, trailing newline) to ``path`` atomically."""
    return write_text(path, json_text(data, sort_keys))
