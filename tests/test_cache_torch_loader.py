"""batch_loader: a torch DataLoader yielding typed PlutoBatch batches of the cache, seeded and
worker-proof."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cache_fakes import FakeSource, make_selection

from pluto_dvc.cache import CacheDataset, build_cache
from pluto_dvc.cache.torch_loader import batch_loader
from pluto_dvc.features import collate
from pluto_dvc.model.batch import PlutoBatch
from pluto_dvc.params import WorkerParams


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> CacheDataset:
    """21 samples (3 logs x 7) in shards of 8."""
    path = tmp_path_factory.mktemp("loader") / "cache"
    build_cache(
        make_selection(3, 7),
        path,
        FakeSource(),
        samples_per_shard=8,
        max_failure_ratio=0.0,
        worker=WorkerParams(kind="sequential"),
    )
    return CacheDataset(path)


def _as_numpy(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: t.numpy() for k, t in batch.items()}


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return set(a) == set(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
        for k in a
    )


def test_sequential_batches_are_the_collated_samples_in_manifest_order(cache):
    batches = list(batch_loader(cache, batch_size=8))
    assert all(isinstance(b, PlutoBatch) for b in batches)
    assert [b.batch_size for b in batches] == [8, 8, 5]
    for n, batch in enumerate(batches):
        batch.validate()
        flat = batch.to_flat()
        assert all(isinstance(t, torch.Tensor) for t in flat.values())
        expected = collate([cache[i] for i in range(8 * n, min(8 * n + 8, len(cache)))])
        assert _equal(_as_numpy(flat), expected)
    assert batches[0].cost_maps.dtype == torch.float16
    assert batches[0].agent.valid_mask.dtype == torch.bool
    assert batches[0].agent.position.shape[:2] == batches[0].agent.valid_mask.shape[:2]
    assert [b.batch_size for b in batch_loader(cache, 8, drop_last=True)] == [8, 8]


def _order(loader) -> list[tuple[float, ...]]:
    """Each sample's current_state, in the order the loader delivered them."""
    return [tuple(row.tolist()) for b in loader for row in b.current_state]


def test_shuffled_order_depends_on_the_seed_only_not_on_workers(cache):
    one = _order(batch_loader(cache, 4, shuffle=True, seed=7))
    assert _order(batch_loader(cache, 4, shuffle=True, seed=7, num_workers=2)) == one
    assert _order(batch_loader(cache, 4, shuffle=True, seed=8)) != one
    # a permutation of every sample, each exactly once
    every = sorted(tuple(cache[i]["current_state"].tolist()) for i in range(len(cache)))
    assert sorted(one) == every


def test_bad_batch_size_is_refused(cache):
    with pytest.raises(ValueError, match="batch_size"):
        batch_loader(cache, 0)
