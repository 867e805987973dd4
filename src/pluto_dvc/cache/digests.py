"""Content identity of log files, so that a regenerated log with the same tokens is rebuilt.

``file_digests(paths, worker, state_file)`` returns ``{path: "sha256:<hex>"}``. Files are hashed
in a thread pool (hashlib releases the GIL) of the worker count; a small JSON state file remembers (size, mtime_ns, inode) -> digest,
so an unchanged file is not read again (after a checkout to new files it is hashed once more).
A file that cannot be read gets ``"unreadable:<reason>"``: its scenarios then fail when the log
is opened, with the reader's message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pluto_dvc.io import write_text
from pluto_dvc.params import WorkerParams
from pluto_dvc.workers import resolve_num_workers

_CHUNK = 4 << 20


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def hash_file(path: str) -> str:
    """``sha256:<hex>`` of a file, or ``unreadable:<reason>``."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.strerror or exc}"
    return f"sha256:{h.hexdigest()}"


def file_digests(
    paths: Sequence[Path], worker: WorkerParams, state_file: Path | None = None
) -> dict[Path, str]:
    """Digest of every path (see the module doc); ``state_file`` caches them between runs."""
    state: dict[str, list] = {}
    if state_file is not None and state_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(state_file.read_text())
    out: dict[Path, str] = {}
    todo: list[Path] = []
    stats: dict[Path, list[int] | None] = {}
    for path in paths:
        stats[path] = key = _stat_key(path)
        entry = state.get(str(path))
        if key is not None and entry is not None and entry[:3] == key:
            out[path] = entry[3]
        else:
            todo.append(path)
    if todo:
        with ThreadPoolExecutor(max_workers=min(len(todo), resolve_num_workers(worker))) as pool:
            for path, digest in zip(todo, pool.map(hash_file, map(str, todo)), strict=True):
                out[path] = digest
    if state_file is not None and todo:
        new_state = {
            str(p): [*stats[p], d]
            for p, d in out.items()
            if stats[p] is not None and d.startswith("sha256:")
        }
        state.update(new_state)
        with contextlib.suppress(OSError):  # only a speed-up: a failed write costs a re-hash
            write_text(state_file, json.dumps(state, sort_keys=True))
    return out
