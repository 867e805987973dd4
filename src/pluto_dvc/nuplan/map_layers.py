"""In-memory layer tables: what the GeoPackage writer takes and what a layer holds on disk.

A :class:`LayerTable` is one GeoPackage layer as columns: ``fields`` maps a column name to a 1-D
array or list (one entry per feature, ``fid`` included: the feature id other layers refer to) and
``geometry`` holds one shapely geometry per feature (``None`` for a non-spatial table such as
``meta``). Coordinates are in the CRS given to the writer (the location's UTM zone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry.base import BaseGeometry


@dataclass
class LayerTable:
    fields: dict[str, np.ndarray | list] = field(default_factory=dict)
    geometry: Sequence[BaseGeometry] | None = None

    def __len__(self) -> int:
        if self.geometry is not None:
            return len(self.geometry)
        return len(next(iter(self.fields.values()))) if self.fields else 0

    def validate(self) -> None:
        """Every column has one entry per feature."""
        n = len(self)
        for name, values in self.fields.items():
            if len(values) != n:
                raise ValueError(f"layer column {name!r} has {len(values)} rows, expected {n}")
