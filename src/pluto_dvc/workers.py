"""Execution of per-log work: sequentially, in a process pool, or on Ray.

The work unit is one log. ``run_per_log`` returns results in input order whatever the worker kind
or count, so outputs built from them are identical for every setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from pluto_dvc.params import WorkerParams

T = TypeVar("T")
R = TypeVar("R")


def resolve_num_workers(params: WorkerParams) -> int:
    """Workers to use: ``num_workers`` or one per available CPU core when it is 0."""
    if params.num_workers > 0:
        return params.num_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_per_log(fn: Callable[[T], R], items: Sequence[T], params: WorkerParams) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in input order.

    ``fn`` must be a picklable top-level function when ``kind`` is ``processes`` or ``ray``
    (arguments and results cross process boundaries; nothing is unpickled from disk).
    """
    workers = min(resolve_num_workers(params), max(1, len(items)))
    if params.kind == "sequential" or workers == 1:
        for item in items:
            yield fn(item)
    elif params.kind == "processes":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(fn, items)
    elif params.kind == "ray":
        yield from _run_ray(fn, items, params, workers)
    else:  # pragma: no cover - excluded by the schema
        raise ValueError(f"unknown worker kind {params.kind!r}")


def _run_ray(fn: Callable[[Any], Any], items: Sequence[Any], params: WorkerParams, workers: int):
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        from pluto_dvc.errors import PlutoDvcError

        raise PlutoDvcError(
            "worker.kind is 'ray' but Ray is not installed: pip install 'ray[default]'"
        ) from exc
    started = False
    if not ray.is_initialized():
        if params.ray_address:
            ray.init(address=params.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(fn)
        refs = [remote.remote(item) for item in items]
        for ref in refs:
            yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()
