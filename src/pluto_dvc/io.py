"""Writing files the way every other tool does: new files get the mode the umask allows.

``temp_file_beside(path)`` creates the temporary file of a write-then-rename next to ``path``.
``tempfile.mkstemp`` alone would create it with mode 0600, and the rename would keep that mode:
a team sharing a machine or a DVC cache could not read the outputs. ``with_path`` adds the file
name to an OSError that lacks it, so that a full disk can be reported with its path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


def temp_file_beside(path: str | os.PathLike) -> str:
    """An empty temp file ``.<name>.*.tmp`` in ``path``'s folder, mode ``0o666 & ~umask``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
