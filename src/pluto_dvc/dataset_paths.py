"""Where a nuPlan dataset lives on disk, real or synthetic, resolved from the ``data`` and
``synthetic`` params (above ``nuplan/``, which knows the format but not the params).

A dataset root holds ``<db_version>/splits/<split>/*.db``; a maps root holds
``nuplan-maps-v1.0.json`` and ``<location>/<version>/map.gpkg``. The synthetic dataset uses the same
layout under ``synthetic.output_dir`` (maps in ``<output_dir>/maps``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pluto_dvc.errors import DataError
from pluto_dvc.params import DataParams, SyntheticParams

SYNTHETIC_DB_VERSION = "nuplan-v1.1"


@dataclass(frozen=True)
class DatasetPaths:
    """Resolved locations: ``logs_dir`` holds the split's .db files, ``maps_root`` the maps."""

    data_root: Path
    logs_dir: Path
    maps_root: Path
    synthetic: bool

    def log_paths(self) -> list[Path]:
        """The split's log databases, sorted by name; a clear error when there are none."""
        if not self.logs_dir.is_dir():
            hint = (
                "run `dvc repro synthesize` (or `pluto-dvc synthesize`)"
                if self.synthetic
                else "check data.nuplan_root / NUPLAN_DATA_ROOT, data.db_version and data.split"
            )
            raise DataError(f"log folder {self.logs_dir} does not exist: {hint}")
        paths = sorted(self.logs_dir.glob("*.db"))
        if not paths:
            raise DataError(f"log folder {self.logs_dir} holds no .db files")
        return paths


def synthetic_paths(params: SyntheticParams) -> DatasetPaths:
    """Paths of the synthetic dataset written by the ``synthesize`` stage."""
    root = Path(params.output_dir)
    return DatasetPaths(
        data_root=root,
        logs_dir=root / SYNTHETIC_DB_VERSION / "splits" / params.split,
        maps_root=root / "maps",
        synthetic=True,
    )


def resolve_dataset(data: DataParams, synthetic: SyntheticParams) -> DatasetPaths:
    """Real nuPlan when a root is configured (params, then environment), else the synthetic set."""
    data_root = data.nuplan_root or os.environ.get("NUPLAN_DATA_ROOT", "")
    maps_root = data.maps_root or os.environ.get("NUPLAN_MAPS_ROOT", "")
    if not data_root:
        paths = synthetic_paths(synthetic)
        if data.split != synthetic.split:
            raise DataError(
                f"data.split is '{data.split}' but the synthetic dataset is written to split "
                f"'{synthetic.split}': set data.split to '{synthetic.split}' or configure "
                "data.nuplan_root for real nuPlan"
            )
        return paths
    if not maps_root:
        raise DataError(
            f"data.nuplan_root is set ({data_root}) but no maps root: set data.maps_root or "
            "NUPLAN_MAPS_ROOT to the folder holding nuplan-maps-v1.0.json"
        )
    root = Path(data_root).expanduser()
    return DatasetPaths(
        data_root=root,
        logs_dir=root / data.db_version / "splits" / data.split,
        maps_root=Path(maps_root).expanduser(),
        synthetic=False,
    )
