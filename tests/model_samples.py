"""PLUTO-shaped samples and batches with chosen object counts, for the model tests.

``sample(seed, agents=, polygons=, lines=, statics=)`` trims a ``cache_fakes.fake_sample`` (the
feature builder's keys, shapes and dtypes) to the given counts of agents (ego included), map
polygons, reference lines (0 allowed) and static objects, without the 600 x 600 cost map.
"""

from __future__ import annotations

import numpy as np
from cache_fakes import fake_sample

from pluto_dvc.features import collate
from pluto_dvc.model import ModelConfig, PlutoBatch

PREFIX_COUNT = {
    "agent.": "agents",
    "map.": "polygons",
    "reference_line.": "lines",
    "static_objects.": "statics",
}

# A narrow network with every component (two pyramid levels, both optional heads): fast tests.
TINY = ModelConfig.preset(
    "small",
    dim=32,
    num_heads=2,
    encoder_depth=2,
    decoder_depth=2,
    num_modes=3,
    history_dims=(16, 32),
    history_heads=(2, 2),
    fourier_bands=8,
    ref_free_head=True,
    hidden_proj=True,
)


def sample(
    seed: int, agents: int, polygons: int, lines: int, statics: int
) -> dict[str, np.ndarray]:
    counts = {"agents": agents, "polygons": polygons, "lines": lines, "statics": statics}
    for attempt in range(100):  # find a fake sample with at least the requested counts
        flat = fake_sample("model-test", f"{seed:08x}{attempt:08x}", cost_maps=False)
        have = {
            "agents": len(flat["agent.category"]),
            "polygons": len(flat["map.polygon_type"]),
            "lines": len(flat["reference_line.position"]),
            "statics": len(flat["static_objects.category"]),
        }
        if all(have[k] >= n for k, n in counts.items()):
            break
    else:
        raise AssertionError(f"no fake sample with {counts}")
    out = {}
    for key, value in flat.items():
        prefix = next((p for p in PREFIX_COUNT if key.startswith(p)), None)
        out[key] = value[: counts[PREFIX_COUNT[prefix]]].copy() if prefix else value
    out["agent.category"][0] = 0  # the ego
    out["agent.category"][1:] = np.maximum(out["agent.category"][1:], 1)
    out["agent.valid_mask"][0] = True
    return out


def batch(*samples: dict[str, np.ndarray]) -> PlutoBatch:
    return PlutoBatch.from_flat(collate(list(samples)))
