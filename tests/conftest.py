"""Shared fixtures: a tiny synthetic nuPlan dataset, generated once per test session."""

from __future__ import annotations

import pytest

from pluto_dvc.dataset_paths import DatasetPaths, synthetic_paths
from pluto_dvc.params import WorkerParams
from pluto_dvc.testing.synthetic_factory import tiny_synthetic_params


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> DatasetPaths:
    """A tiny synthetic dataset (2 logs on tiny maps, 2 min each); treat it as read-only."""
    from pluto_dvc.synthetic.dataset import synthesize_dataset

    params = tiny_synthetic_params(tmp_path_factory.mktemp("synthetic") / "nuplan")
    synthesize_dataset(params, WorkerParams(kind="sequential"))
    return synthetic_paths(params)
