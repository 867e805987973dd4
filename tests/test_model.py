"""The PLUTO network: shapes, padding invariance, permutation equivariance, the reference-free
fallback, gradients to every parameter, safe save/load, and neighbourhood attention against a
naive loop."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_samples import TINY, batch, sample

from pluto_dvc.errors import DataError
from pluto_dvc.model import ModelConfig, PlutoBatch, PlutoModel, load_model, save_model
from pluto_dvc.model.model import NeighborhoodAttention1D

F = 80  # future steps of the fake samples


@pytest.fixture(scope="module")
def mixed() -> PlutoBatch:
    """Three samples with different agent / polygon / line / static-object counts."""
    return batch(
        sample(1, agents=5, polygons=30, lines=2, statics=0),
        sample(2, agents=12, polygons=50, lines=1, statics=3),
        sample(3, agents=3, polygons=20, lines=3, statics=1),
    )


def _model(config: ModelConfig = TINY, seed: int = 0) -> PlutoModel:
    torch.manual_seed(seed)
    return PlutoModel(config).eval()


@pytest.mark.parametrize("preset", ["small", "pluto"])
def test_output_shapes_on_a_batch_mixing_object_counts(mixed, preset):
    config = ModelConfig.preset(preset, ref_free_head=True, hidden_proj=True)
    with torch.no_grad():
        out = _model(config)(mixed)
    modes = config.num_modes
    assert out.trajectory.shape == (3, 3, modes, F, 6)
    assert out.probability.shape == (3, 3, modes)
    assert out.prediction.shape == (3, 11, F, 6)
    assert out.ref_free_trajectory.shape == (3, F, 4)
    assert out.hidden.shape == (3, config.dim)
    for value in vars(out).values():
        assert torch.isfinite(value).all()
    best = out.best_trajectory(mixed.reference_line.line_valid)
    assert best.shape == (3, F, 6)


def _outputs(model: PlutoModel, b: PlutoBatch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: v for k, v in vars(model(b)).items() if v is not None}


def test_padding_agents_polygons_lines_and_static_objects_changes_no_real_output(mixed):
    model = _model()
    plain = _outputs(model, mixed)
    # concatenating a larger sample pads every object axis of the first three samples
    big = batch(sample(9, agents=20, polygons=70, lines=3, statics=6))
    bigger = batch(sample(9, agents=20, polygons=70, lines=3, statics=6))
    padded_batch = PlutoBatch.cat([mixed, big]).select([0, 1, 2])
    assert padded_batch.agent.position.shape[1] == 20
    assert padded_batch.map.valid_mask.shape[1] == 70
    assert padded_batch.static_objects.valid_mask.shape[1] == 6
    padded_lines = PlutoBatch.cat([padded_batch, bigger])
    # and one more padded reference line (all points invalid)
    lines = padded_lines.reference_line
    for name in ("position", "vector", "orientation", "valid_mask", "future_projection"):
        t = getattr(lines, name)
        setattr(lines, name, torch.cat([t, torch.zeros_like(t[:, :1])], dim=1))
    padded = _outputs(model, padded_lines.select([0, 1, 2]))
    assert padded["trajectory"].shape[1] == 4
    for key, value in plain.items():
        if key in ("trajectory", "probability"):
            got = padded[key][:, :3]
        elif key == "prediction":
            got = padded[key][:, :11]
        else:
            got = padded[key]
        torch.testing.assert_close(got, value, atol=2e-5, rtol=1e-4, msg=key)


def test_permuting_non_ego_agents_permutes_their_predictions(mixed):
    model = _model()
    out = _outputs(model, mixed)
    a = mixed.agent.position.shape[1]
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(a - 1)])
    flat = mixed.to_flat()
    for key in list(flat):
        if key.startswith("agent."):
            flat[key] = flat[key][:, perm]
    permuted = _outputs(model, PlutoBatch.from_flat(flat))
    torch.testing.assert_close(
        permuted["prediction"], out["prediction"][:, perm[1:] - 1], atol=2e-5, rtol=1e-4
    )
    for key in ("trajectory", "probability", "ref_free_trajectory", "hidden"):
        torch.testing.assert_close(permuted[key], out[key], atol=2e-5, rtol=1e-4, msg=key)
    assert not torch.allclose(out["prediction"][:, 0], out["prediction"][:, 1])


def test_a_sample_without_reference_line_gets_a_finite_reference_free_plan():
    b = batch(
        sample(4, agents=6, polygons=25, lines=0, statics=2),
        sample(5, agents=8, polygons=30, lines=2, statics=1),
    )
    line_valid = b.reference_line.line_valid
    assert line_valid.tolist() == [[False, False], [True, True]]
    out = _model()(b)
    assert all(torch.isfinite(v).all() for v in vars(out).values() if v is not None)
    best = out.best_trajectory(line_valid)
    assert torch.isfinite(best).all()
    torch.testing.assert_close(best[0, :, :4], out.ref_free_trajectory[0])
    # velocity of the fallback: finite differences of its positions over 0.1 s from the origin
    torch.testing.assert_close(best[0, 0, 4:], out.ref_free_trajectory[0, 0, :2] / 0.1)
    logits = out.probability[1]
    r, m = divmod(int(logits.argmax()), logits.shape[1])
    torch.testing.assert_close(best[1], out.trajectory[1, r, m])
    # a lone sample without any line, and a cache without reference lines at all
    alone = _model()(batch(sample(4, agents=6, polygons=25, lines=0, statics=2)))
    torch.testing.assert_close(
        alone.ref_free_trajectory, out.ref_free_trajectory[:1], atol=2e-5, rtol=1e-4
    )
    b.reference_line = None
    none = _model()(b)
    assert none.trajectory.shape == (2, 0, TINY.num_modes, F, 6)
    assert torch.isfinite(none.best_trajectory(torch.zeros(2, 0, dtype=torch.bool))).all()
    no_head = _model(TINY.replace(ref_free_head=False))(batch(sample(4, 6, 25, 0, 2)))
    with pytest.raises(ValueError, match="reference-free head"):
        no_head.best_trajectory(torch.zeros(1, 0, dtype=torch.bool))


def test_best_trajectory_ignores_padded_lines():
    b = batch(sample(6, 5, 20, 1, 0), sample(7, 5, 20, 3, 0))
    out = _model()(b)
    out.probability = out.probability.detach().clone()
    out.probability[0, 1:] = 1e4  # padded lines of sample 0 score highest: must be ignored
    out.probability[0, 0, 2] = 50.0
    best = out.best_trajectory(b.reference_line.line_valid)
    torch.testing.assert_close(best[0], out.trajectory[0, 0, 2])


def test_every_parameter_receives_a_gradient_from_the_summed_outputs(mixed):
    torch.manual_seed(0)
    model = PlutoModel(TINY).train()
    out = model(mixed)
    loss = sum(v.square().mean() for v in vars(out).values() if v is not None)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []
    # and train mode is stochastic (dropout, drop path, state dropout), eval mode is not
    again = model(mixed).trajectory
    assert not torch.allclose(again, out.trajectory)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(mixed).trajectory, model(mixed).trajectory, atol=0, rtol=0)


def test_save_then_load_gives_identical_outputs(tmp_path, mixed):
    model = _model(seed=3)
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.safetensors",
        "model_config.json",
    ]
    loaded = load_model(tmp_path / "m")
    a, b = _outputs(model, mixed), _outputs(loaded, mixed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=0, rtol=0)
    assert loaded.config == model.config
    # a compiled / wrapped model saves the same network
    save_model(torch.nn.DataParallel(model), tmp_path / "wrapped")
    assert (tmp_path / "wrapped" / "model.safetensors").read_bytes() == (
        tmp_path / "m" / "model.safetensors"
    ).read_bytes()


def test_load_refuses_mismatched_or_unsafe_files(tmp_path):
    save_model(_model(), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "model_config.json").read_text())
    config["config"]["dim"] = 48
    (tmp_path / "m" / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="does not match"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(DataError, match="safetensors"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(DataError, match="missing"):
        load_model(tmp_path / "m")


def _naive_neighborhood_attention(layer: NeighborhoodAttention1D, x: torch.Tensor) -> torch.Tensor:
    """NATTEN's 1-D neighbourhood attention written as loops over queries and window keys."""
    n, length, d = x.shape
    k, heads = layer.kernel, layer.num_heads
    ns = k // 2
    size = max(length, k)
    xp = torch.cat([x, x.new_zeros(n, size - length, d)], dim=1)  # right-pad short sequences
    q, key, v = layer.qkv(xp).view(n, size, 3, heads, d // heads).unbind(2)
    out = torch.zeros(n, size, heads, d // heads)
    for i in range(size):
        # window start and bias start as NATTEN computes them (non-dilated)
        start = max(i - ns, 0) + (size - i - ns - 1 if i + ns >= size else 0)
        pb_start = ns + (ns - i if i < ns else 0) + (size - i - 1 - ns if i + ns >= size else 0)
        scores = torch.zeros(n, heads, k)
        for w in range(k):
            j = start + w
            scores[:, :, w] = (q[:, i] * key[:, j]).sum(-1) / (d // heads) ** 0.5
            scores[:, :, w] += layer.rpb[:, pb_start + w]
        attn = scores.softmax(-1)
        for w in range(k):
            out[:, i] += attn[:, :, w, None] * v[:, start + w]
    return layer.proj(out.reshape(n, size, d))[:, :length]


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 20])
def test_neighborhood_attention_equals_a_naive_loop_borders_included(kernel, length):
    torch.manual_seed(kernel * 100 + length)
    layer = NeighborhoodAttention1D(dim=12, num_heads=3, kernel=kernel)
    with torch.no_grad():
        layer.rpb.normal_(0.0, 1.0)  # a strong bias: a wrong index shows
        x = torch.randn(4, length, 12)
        torch.testing.assert_close(
            layer(x), _naive_neighborhood_attention(layer, x), atol=1e-5, rtol=1e-5
        )


def test_model_refuses_a_batch_with_another_feature_layout(mixed):
    model = _model(TINY.replace(future_steps=60))
    with pytest.raises(DataError, match="feature layout"):
        model(mixed)


def test_loader_and_model_import_no_map_stack_and_no_cache_builder():
    code = (
        "import sys\n"
        "import pluto_dvc.cache.torch_loader, pluto_dvc.model.model, pluto_dvc.model.weights\n"
        "from pluto_dvc.model import PlutoModel, PlutoBatch, load_model\n"
        "heavy = ('shapely', 'pyogrio', 'pyproj', 'pluto_dvc.cache.builder',\n"
        "         'pluto_dvc.features.builder', 'pluto_dvc.nuplan.map_reader')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_parameter_count_of_the_paper_preset():
    count = PlutoModel(ModelConfig.preset("pluto")).num_parameters()
    assert abs(count - 4_058_893) / 4_058_893 < 0.02, count
    assert PlutoModel(ModelConfig.preset("small")).num_parameters() < count / 4


def test_sample_with_extra_history_steps_is_refused_with_the_sizes(mixed):
    flat = mixed.to_flat()
    for key in (
        "agent.position",
        "agent.heading",
        "agent.velocity",
        "agent.shape",
        "agent.valid_mask",
    ):
        flat[key] = torch.cat([flat[key][:, :, :1], flat[key]], dim=2)
    with pytest.raises(DataError, match="agent steps 102"):
        _model()(PlutoBatch.from_flat(flat))
    assert np.isfinite(mixed.current_state.numpy()).all()


def test_output_scale_multiplies_positions_and_velocities_not_headings(mixed):
    base = _model(TINY.replace(ref_free_head=True, output_scale_m=1.0))
    scaled = PlutoModel(TINY.replace(ref_free_head=True, output_scale_m=10.0)).eval()
    scaled.load_state_dict(base.state_dict())
    with torch.no_grad():
        a, b = base(mixed), scaled(mixed)
    for one, ten in ((a.trajectory, b.trajectory), (a.prediction, b.prediction)):
        assert torch.allclose(one[..., 2:4], ten[..., 2:4])
    assert torch.allclose(a.trajectory[..., :2] * 10, b.trajectory[..., :2], atol=1e-5)
    assert torch.allclose(a.trajectory[..., 4:] * 10, b.trajectory[..., 4:], atol=1e-5)
    present = mixed.agent.position[:, 1:, TINY.history_steps - 1, None]
    offset_a, offset_b = a.prediction[..., :2] - present, b.prediction[..., :2] - present
    assert torch.allclose(offset_a * 10, offset_b, atol=1e-4)
    assert torch.allclose(a.ref_free_trajectory[..., :2] * 10, b.ref_free_trajectory[..., :2])
    assert torch.allclose(a.ref_free_trajectory[..., 2:], b.ref_free_trajectory[..., 2:])


def test_ego_query_adds_the_encoded_ego_token_to_every_planning_query(mixed):
    model = _model(TINY.replace(ego_query=True))
    seen = {}
    model.decoder.query_proj.register_forward_hook(lambda m, i, o: seen.update(query=o))
    model.decoder.layers[0].register_forward_hook(
        lambda m, args, o: seen.update(first=args[0], scene=args[3])
    )
    with torch.no_grad():
        model(mixed)
    ego = seen["scene"][:, 0, None, None]  # (B, 1, 1, dim): scene token 0 is the ego
    assert torch.allclose(seen["first"], seen["query"] + ego)
    off = _model(TINY.replace(ego_query=False))
    off.decoder.query_proj.register_forward_hook(lambda m, i, o: seen.update(query=o))
    off.decoder.layers[0].register_forward_hook(lambda m, args, o: seen.update(first=args[0]))
    with torch.no_grad():
        off(mixed)
    assert torch.equal(seen["first"], seen["query"])
