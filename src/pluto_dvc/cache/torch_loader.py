"""A torch ``DataLoader`` over the cache that decodes whole batches (``CacheDataset.batch``).

``batch_loader(cache, 32, shuffle=True, seed=0)`` yields typed
:class:`~pluto_dvc.model.batch.PlutoBatch` batches holding the same arrays as
``collate([cache[i] for i in batch_indices])`` (padded along the first axis, masks False on
padding; ``batch.to_flat()`` gives the flat dict back), as CPU tensors sharing memory with the
decoded numpy arrays. Move a batch with ``batch.to(device)``; the float16 cost map is cast there. The loader's
sampler is a ``BatchSampler``, so each ``__getitem__`` receives a list of indices and decodes them
straight into the batch arrays (about 10-15 % faster than item by item + collate, see
``benchmarks/bench_cache.py``). With ``num_workers > 0`` every worker opens its own shard
descriptors (``CacheDataset`` never shares them across processes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from pluto_dvc.cache.dataset import CacheDataset
from pluto_dvc.model.batch import PlutoBatch


class CacheBatches(Dataset):
    """Map-style dataset whose items are batches: ``ds[[i, j, ...]] -> PlutoBatch``."""

    def __init__(self, cache: CacheDataset):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, indices: Sequence[int]) -> PlutoBatch:
        return PlutoBatch.from_flat(
            {key: torch.from_numpy(a) for key, a in self.cache.batch(indices).items()}
        )


def batch_loader(
    cache: CacheDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of ``cache`` in manifest order, or in a seeded random order (``shuffle``).

    The order depends only on ``seed`` and the epoch (the generator advances per epoch), never on
    ``num_workers``. ``pin_memory`` pins each batch (``PlutoBatch.pin_memory``) for fast
    host-to-GPU copies.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        order = RandomSampler(range(len(cache)), generator=torch.Generator().manual_seed(seed))
    else:
        order = SequentialSampler(range(len(cache)))
    return DataLoader(
        CacheBatches(cache),
        batch_size=None,  # the sampler below already yields lists of indices
        sampler=BatchSampler(order, batch_size, drop_last),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
