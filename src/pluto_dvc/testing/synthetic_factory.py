"""The tiny synthetic dataset the tests share (a few seconds to generate)."""

from __future__ import annotations

from pluto_dvc.params import SyntheticParams

TINY_SYNTHETIC = {
    "seed": 7,
    "num_logs": 2,
    "minutes_per_log": 2.0,
    "log_locations": ["us-nv-las-vegas-strip", "sg-one-north"],
    "map_size": "tiny",
    "num_vehicles": 14,
    "num_pedestrians": 6,
    "num_cyclists": 2,
}


def tiny_synthetic_params(output_dir, **overrides) -> SyntheticParams:
    """SyntheticParams of the tiny test dataset, written to ``output_dir``."""
    return SyntheticParams(**{**TINY_SYNTHETIC, "output_dir": str(output_dir), **overrides})
