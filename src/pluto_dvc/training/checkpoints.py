"""Portable copies of Lightning checkpoints: the same bytes for the same training, wherever and
however it ran (the ``checkpoints/`` of the train stage's output, which DVC hashes).

A checkpoint as Lightning writes it depends on more than the training:

- ModelCheckpoint's state holds absolute paths (``dirpath``, ``best_model_path``,
  ``kth_best_model_path``, ``last_model_path``, the keys of ``best_k_models``): here they are
  rewritten under a relative folder (``checkpoints/last.ckpt``);
- pickle writes an object met twice as a back-reference, so the bytes depend on which equal
  objects are one object: after a kill -9 + resume the optimizer state's ``'step'`` keys are
  other string objects than in an uninterrupted run (equal values, other pickle). Here every
  string is interned (equal strings: one object), every container is rebuilt and every tensor is
  a contiguous CPU copy of its own (no shared tensors or storages), so the pickle depends on the
  values alone;
- ``torch.save`` to a file path names the zip archive's folder after the file: the copy is saved
  to memory (folder ``archive``) and written atomically. torch's ``.data/serialization_id`` is a
  hash of the content, zip entry times are fixed.

The copy loads with ``torch.load(weights_only=True)`` and resumes a Trainer like the original.
"""

from __future__ import annotations

import copy
import io
import os
import sys
from pathlib import Path
from typing import Any

import torch

from pluto_dvc.io import atomic_write


def export_checkpoint(src: Path, dst: Path, old_dir: str | Path, new_dir: str) -> None:
    """Write the portable copy of ``src`` (see the module doc) to ``dst``; strings equal to
    ``old_dir`` or starting with ``old_dir/`` start with ``new_dir`` instead."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save(_canonical(ckpt, os.fspath(old_dir), new_dir), buffer)
    atomic_write(dst, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def _canonical(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        if value == old or value.startswith(old + os.sep):
            value = new + value[len(old) :]
        return sys.intern(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    if isinstance(value, dict):  # same type (OrderedDict, defaultdict) and attributes (_metadata)
        out = copy.copy(value)
        out.clear()
        for k, v in value.items():
            out[_canonical(k, old, new)] = _canonical(v, old, new)
        for name, attr in getattr(value, "__dict__", {}).items():
            setattr(out, name, _canonical(attr, old, new))
        return out
    if type(value) in (list, tuple):
        return type(value)(_canonical(v, old, new) for v in value)
    return value
