"""The training data: cache + log-level split -> batched, rank-aware loaders.

``ShardedBatchSampler`` yields lists of sample indices for one rank (the cache decodes a whole
batch at once, so the loader's sampler is a batch sampler, which Lightning's
``DistributedSampler`` does not understand). Each epoch, the permutation is seeded by
``(seed, epoch)``; rank ``r`` of ``w`` takes positions ``r, r + w, ...`` of it and cuts them into
the same number of batches on every rank (sizes differ by at most one), so **every sample is
seen exactly once per epoch across ranks**, no rank waits on another, and a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Sampler

from pluto_dvc.cache.dataset import CacheDataset
from pluto_dvc.cache.torch_loader import CacheBatches
from pluto_dvc.errors import DataError
from pluto_dvc.splitting import read_splits


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of ``range(num_samples)`` for ``rank`` of ``world_size`` (see the module doc)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_samples < world_size:
            raise DataError(
                f"{num_samples} sample(s) cannot be shared by {world_size} ranks: every rank needs "
                "at least one (use fewer devices or more data)"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        per_rank = self.num_samples // self.world_size  # the smallest shard
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        shard = order[self.rank :: self.world_size]
        for batch in np.array_split(shard, len(self)):
            yield batch.tolist()


class PlutoDataModule(L.LightningDataModule):
    """Train / val / test samples of the cache, by the logs of ``splits.json``.

    Loaders yield ``{flat key: tensor (B, ...)}`` (``PlutoBatch.from_flat`` turns them typed on
    the device). Pinned memory when ``pin_memory`` (set it for GPUs).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        splits_path: str | Path,
        batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        verify: bool = True,
    ):
        super().__init__()
        self.cache_dir = Path(cache_dir)
        self.splits_path = Path(splits_path)
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.verify = verify
        self.parts: dict[str, CacheDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.parts:
            return
        splits = read_splits(self.splits_path)
        for part in ("train", "val", "test"):
            ds = CacheDataset(self.cache_dir, log_names=splits[part], verify=self.verify)
            self.parts[part] = ds
        for part in ("train", "val"):
            if len(self.parts[part]) == 0:
                raise DataError(
                    f"the cache {self.cache_dir} has no sample of a '{part}' log of "
                    f"{self.splits_path}: the split and the cache come from different selections"
                    " (re-run `dvc repro build_cache`)"
                )

    @property
    def meta(self) -> dict:
        self.setup()
        return self.parts["train"].meta

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def loader(self, part: str, shuffle: bool) -> DataLoader:
        self.setup()
        rank, world = self._rank()
        sampler = ShardedBatchSampler(
            len(self.parts[part]), self.batch_size, shuffle, self.seed, rank, world
        )
        return DataLoader(
            CacheBatches(self.parts[part]),
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)
