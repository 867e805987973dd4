"""The typed batch API (PlutoBatch) and the model config read from the cache's metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_samples import batch, sample

from pluto_dvc.errors import ParamsError
from pluto_dvc.features import collate
from pluto_dvc.model import BatchError, LayoutError, ModelConfig, PlutoBatch
from pluto_dvc.params import FeatureParams


@pytest.fixture(scope="module")
def samples() -> list[dict[str, np.ndarray]]:
    return [sample(11, 4, 10, 1, 0), sample(12, 7, 15, 2, 3)]


def test_from_flat_groups_keys_into_typed_parts_and_to_flat_inverts_it(samples):
    flat = collate(samples)
    b = PlutoBatch.from_flat(flat)
    assert b.batch_size == 2
    assert b.agent.position.shape == (2, 7, 101, 2)
    assert b.map.polygon_type.dtype == torch.int8
    assert b.map.polygon_id is None  # absent from these samples
    assert b.reference_line.line_valid.tolist() == [[True, False], [True, True]]
    assert b.cost_maps is None and b.causal is None
    sizes = b.validate()
    assert {k: sizes[k] for k in ("B", "A", "T", "F", "M", "P", "R", "L", "K", "S")} == {
        "B": 2, "A": 7, "T": 101, "F": 80, "M": 15, "P": 20, "R": 2, "L": 120, "K": 8, "S": 3,
    }  # fmt: skip
    back = b.to_flat()
    assert set(back) == set(flat)
    for key, value in flat.items():
        assert np.array_equal(back[key].numpy(), value)


def test_cat_pads_object_axes_and_keeps_every_value(samples):
    one, two = batch(samples[0]), batch(samples[1])
    both = PlutoBatch.cat([one, two])
    assert both.agent.position.shape == (2, 7, 101, 2)
    expected = collate(samples)  # the same padding rule as the loader's collate
    for key, value in both.to_flat().items():
        assert value.dtype == torch.from_numpy(expected[key]).dtype
        assert np.array_equal(value.numpy(), expected[key]), key
    assert not both.agent.valid_mask[0, 4:].any()  # padding rows are invalid
    torch.testing.assert_close(both.select([1]).agent.position, two.agent.position)
    no_static = batch(sample(13, 4, 10, 1, 0))
    no_static.static_objects = None
    with pytest.raises(BatchError, match="static_objects"):
        PlutoBatch.cat([one, no_static])


def test_causal_keys_are_typed_and_unknown_ones_kept(samples):
    flat = collate(samples)
    flat["causal.leading_agent_mask"] = np.zeros((2, 7), dtype=bool)
    flat["causal.leading_agent_mask"][1, 3] = True
    flat["causal.some_future_key"] = np.ones((2, 5), dtype=np.float32)
    b = PlutoBatch.from_flat(flat)
    assert b.causal.leading_agent_mask[1, 3]
    assert set(b.causal.extra) == {"some_future_key"}
    b.validate()
    padded = PlutoBatch.cat([b, PlutoBatch.from_flat(flat)])
    assert padded.causal.extra["some_future_key"].shape == (4, 5)
    assert set(padded.to_flat()) == set(flat)


def test_validate_names_the_field_with_a_wrong_dtype_or_shape(samples):
    b = batch(*samples)
    b.agent.heading = b.agent.heading.double()
    with pytest.raises(BatchError, match="AgentBatch.heading has dtype torch.float64"):
        b.validate()
    b = batch(*samples)
    b.map.valid_mask = b.map.valid_mask[:, :, :10]
    with pytest.raises(BatchError, match="MapBatch.valid_mask"):
        b.validate()
    b = batch(*samples)
    b.current_state = b.current_state[:1]
    with pytest.raises(BatchError, match=r"PlutoBatch.origin has shape \(2, 2\)"):
        b.validate()
    flat = collate(samples)
    flat["agents.position"] = flat.pop("agent.position")
    with pytest.raises(BatchError, match="agents.position"):
        PlutoBatch.from_flat(flat)


def test_to_moves_every_tensor_and_keeps_dtypes(samples):
    flat = collate(samples)
    flat["cost_maps"] = np.zeros((2, 8, 8, 1), dtype=np.float16)
    b = PlutoBatch.from_flat(flat).to("meta")
    assert all(t.device.type == "meta" for t in b.to_flat().values())
    assert b.cost_maps.dtype == torch.float16 and b.origin.dtype == torch.float64


def _meta(**features) -> dict:
    return {"source": {"features": {**FeatureParams().model_dump(mode="json"), **features}}}


def test_config_takes_the_data_fixed_sizes_from_the_cache_metadata():
    config = ModelConfig.for_cache(
        _meta(history_horizon_s=1.0, future_horizon_s=6.0, map_polyline_points=10),
        preset="small",
        dim=48,
    )
    assert (config.history_steps, config.future_steps, config.polyline_points) == (11, 60, 10)
    assert config.reference_line_points == 120 and config.dim == 48
    with pytest.raises(ParamsError, match="contradicts the cache"):
        ModelConfig.for_cache(_meta(), future_steps=60)
    with pytest.raises(LayoutError, match="polyline_points: model 20, cache 10"):
        ModelConfig.preset("pluto").check_cache(_meta(map_polyline_points=10))
    with pytest.raises(LayoutError, match="no reference lines"):
        ModelConfig.preset("pluto").check_cache(_meta(build_reference_lines=False))
    with pytest.raises(LayoutError, match="records no feature layout"):
        ModelConfig.for_cache({"source": {"builder": "x"}})
    with pytest.raises(ParamsError, match="unknown model preset"):
        ModelConfig.preset("huge")
    with pytest.raises(ParamsError, match="history_kernels"):
        ModelConfig.preset("small", history_kernels=(3, 4))


def test_sub_batches_have_the_fields_of_the_feature_records():
    from dataclasses import fields

    from pluto_dvc.features import records
    from pluto_dvc.model import batch as b

    pairs = [
        (b.AgentBatch, records.AgentFeatures),
        (b.MapBatch, records.MapFeatures),
        (b.ReferenceLineBatch, records.ReferenceLines),
        (b.StaticObjectBatch, records.StaticObjects),
    ]
    for typed, record in pairs:
        assert {f.name for f in fields(typed)} == set(record.SPEC), typed.__name__
        assert typed.PREFIX == record.PREFIX
    assert {f.name for f in fields(b.CausalBatch)} == {*records.CausalInfo.SPEC, "extra"}
    assert b.CausalBatch.PREFIX == records.CausalInfo.PREFIX
