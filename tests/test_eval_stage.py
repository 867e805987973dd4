"""The evaluate stage end to end on the tiny synthetic dataset (real logs, maps, feature cache):
reports/ files, the expert's OLS of 1, cached and built frames, learning metrics, pictures that are
real images with content, determinism, the visualize command and clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pluto_dvc.cache import FeatureSource, build_cache
from pluto_dvc.cli import main
from pluto_dvc.evaluation.stage import run_evaluate
from pluto_dvc.model import PlutoOutput
from pluto_dvc.params import FeatureParams, FilterParams, WorkerParams, parse_params
from pluto_dvc.selection import resolve_filter, select_scenarios
from pluto_dvc.selection.output import to_arrow

PICTURE_PX = 320
EVAL = {
    "scenarios_per_type": 1,
    "learning_max_samples": 24,
    "num_pictures": 2,
    "num_worst_pictures": 1,
    "picture_size_px": PICTURE_PX,
    "batch_size": 8,
}


class StraightModel(torch.nn.Module):
    """A stand-in network with PLUTO's outputs: per reference line, mode m drives straight at
    (m + 1) / M of the present speed (the last mode keeps it); the last mode scores highest.
    Agents are predicted to stand still."""

    def __init__(self, modes: int = 3, future: int = 80, step: float = 0.1):
        super().__init__()
        self.modes, self.future, self.step = modes, future, step

    def forward(self, batch) -> PlutoOutput:
        b = batch.batch_size
        r = batch.reference_line.position.shape[1]
        speed = batch.current_state[:, 3].double()
        t = self.step * torch.arange(1, self.future + 1, dtype=torch.float64)
        frac = torch.arange(1, self.modes + 1, dtype=torch.float64) / self.modes
        x = speed[:, None, None] * frac[None, :, None] * t[None, None, :]  # (B, M, F)
        traj = torch.zeros(b, r, self.modes, self.future, 6)
        traj[..., 0] = x[:, None].float()
        traj[..., 2] = 1.0
        prob = frac.float().expand(b, r, self.modes).clone()
        a = batch.agent.position.shape[1]
        present = batch.agent.position.shape[2] - self.future - 1
        pred = torch.zeros(b, a - 1, self.future, 6)
        pred[..., :2] = batch.agent.position[:, 1:, present : present + 1]
        return PlutoOutput(trajectory=traj, probability=prob, prediction=pred)


@pytest.fixture(scope="module")
def pipeline(tiny_synthetic, tmp_path_factory):
    """scenarios.parquet, splits.json (one log per part: train, test) and a cache holding about
    every 4th scenario of the test log, so evaluation both reads and builds frames."""
    root = tmp_path_factory.mktemp("eval")
    chosen = select_scenarios(
        tiny_synthetic, resolve_filter(FilterParams()), WorkerParams(kind="sequential")
    )
    table = to_arrow(chosen.table)
    pq.write_table(table, root / "scenarios.parquet")
    frame = table.to_pandas()
    logs = sorted(frame.log_name.unique())
    (root / "splits.json").write_text(
        json.dumps({"train": [logs[0]], "val": [], "test": [logs[1]]})
    )
    features = FeatureParams(build_cost_map=False)
    subset = frame[frame.log_name == logs[1]].sort_values("token").iloc[::4].reset_index(drop=True)
    source = FeatureSource(features, str(tiny_synthetic.data_root), str(tiny_synthetic.maps_root))
    build_cache(
        subset,
        root / "cache",
        source,
        samples_per_shard=64,
        max_failure_ratio=1.0,
        worker=WorkerParams(kind="sequential"),
    )
    return root, tiny_synthetic


def _evaluate(pipeline, reports: Path, **overrides):
    root, data = pipeline
    params = parse_params({"evaluate": {**EVAL, **overrides}})
    messages: list[str] = []
    metrics = run_evaluate(
        params,
        scenarios_path=root / "scenarios.parquet",
        splits_path=root / "splits.json",
        cache_dir=root / "cache",
        model_dir=root / "no-model",
        reports_dir=reports,
        data_root=data.data_root,
        maps_root=data.maps_root,
        model=StraightModel(),
        log_mlflow=False,
        progress=messages.append,
    )
    return metrics, messages


@pytest.fixture(scope="module")
def evaluated(pipeline, tmp_path_factory):
    reports = tmp_path_factory.mktemp("run") / "reports"
    metrics, messages = _evaluate(pipeline, reports)
    return metrics, messages, reports


def test_reports_hold_the_scores_of_every_planner(evaluated):
    metrics, _, reports = evaluated
    planners = ["model", "constant_velocity", "constant_velocity_reference_line", "expert"]
    assert list(metrics["ols"]) == planners
    assert json.loads((reports / "metrics.json").read_text()) == metrics
    counts = metrics["counts"]
    assert counts["scenarios"] >= 3 and counts["frames"] == 15 * counts["scenarios"]
    assert counts["frames_from_cache"] > 0 and counts["frames_built"] > 0
    assert metrics["ols"]["expert"]["score"] == 1.0
    assert metrics["horizons"]["expert"]["fde_8s"] == 0.0
    # the stand-in model drives straight at the present speed: constant velocity exactly
    for key in ("score", "ade_m", "fhe_rad"):
        assert metrics["ols"]["model"][key] == pytest.approx(
            metrics["ols"]["constant_velocity"][key], abs=1e-5
        )
    assert 0.0 <= metrics["ols"]["constant_velocity_reference_line"]["score"] <= 1.0
    with open(reports / "per_type.csv") as f:
        rows = list(csv.DictReader(f))
    types = {r["scenario_type"] for r in rows}
    assert "all" in types and len(types) == counts["scenario_types"] + 1
    assert len(rows) == 4 * len(types)
    assert "| all |" in (reports / "per_type.md").read_text()
    with open(reports / "plots" / "displacement_vs_horizon.csv") as f:
        plot = list(csv.DictReader(f))
    assert [r["horizon_s"] for r in plot] == [str(k) for k in range(1, 9)]
    errors = [float(r["constant_velocity"]) for r in plot]
    assert errors == sorted(errors) and float(plot[-1]["expert"]) == 0.0


def test_learning_metrics(evaluated):
    learning = evaluated[0]["learning"]
    assert learning["num_samples"] > 0
    assert 0.0 <= learning["min_ade"] <= learning["top1_ade"] + 1e-9
    assert learning["min_fde"] <= learning["top1_fde"] + 1e-9
    # the stand-in's top-1 is constant velocity: the training metric's own CV agrees
    assert learning["top1_fde"] == pytest.approx(learning["cv_fde"], rel=1e-4, abs=1e-4)
    assert 0.0 <= learning["miss_rate"] <= 1.0 and learning["prediction_ade"] >= 0.0


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def test_scene_pictures_are_images_with_content(evaluated):
    _, _, reports = evaluated
    pngs = sorted((reports / "scenes").glob("*.png"))
    names = [p.name for p in pngs]
    assert len(pngs) == 3 and "worst_00.png" in names
    assert sum(n.startswith("scene_00_") for n in names) == 1
    for path in pngs:
        rgb = _image(path)
        assert rgb.shape == (PICTURE_PX, PICTURE_PX, 3)
        colours = {tuple(c) for c in rgb.reshape(-1, 3)[::7]}
        assert len(colours) > 50  # map, agents, trajectories: not a blank canvas
        for colour in ((0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)):  # ego box, expert future
            near = np.abs(rgb.astype(int) - colour).sum(axis=-1) < 30
            assert near.sum() > 20, (path.name, colour)


def test_same_inputs_give_identical_reports(pipeline, evaluated, tmp_path):
    _, _, first = evaluated
    _evaluate(pipeline, tmp_path / "again")
    for name in ("metrics.json", "per_type.csv", "per_type.md", "scenarios.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (first / name).read_bytes(), name
    for path in (first / "plots").iterdir():
        assert (tmp_path / "again" / "plots" / path.name).read_bytes() == path.read_bytes()


def test_visualize_draws_a_cached_token(pipeline, tmp_path, capsys):
    root, _ = pipeline
    from pluto_dvc.cache import CacheDataset

    token = CacheDataset(root / "cache").key(0)[1]
    out = tmp_path / "scene.png"
    code = main(
        ["visualize", "--token", token, "--cache-dir", str(root / "cache"), "--out", str(out)]
    )
    assert code == 0 and out.is_file()
    assert _image(out).shape == (800, 800, 3)
    code = main(["visualize", "--token", "0" * 16, "--cache-dir", str(root / "cache")])
    assert code == 2 and "is not in the cache" in capsys.readouterr().err


def test_bad_inputs_get_one_clear_message(pipeline, tmp_path, capsys):
    root, data = pipeline
    args = [
        "evaluate",
        "--scenarios",
        str(root / "scenarios.parquet"),
        "--cache-dir",
        str(root / "cache"),
        "--reports",
        str(tmp_path / "reports"),
    ]
    assert main([*args, "--splits", str(tmp_path / "missing.json")]) == 2
    assert "dvc repro split" in capsys.readouterr().err
    assert (
        main([*args, "--splits", str(root / "splits.json"), "-S", "evaluate.split_part=val"]) == 2
    )
    assert "no logs in part 'val'" in capsys.readouterr().err
    code = main(
        [
            *args,
            "--splits",
            str(root / "splits.json"),
            "--model",
            str(tmp_path / "models"),
            "--data-root",
            str(data.data_root),
            "--maps-root",
            str(data.maps_root),
        ]
    )
    assert code == 2 and "dvc repro train" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()  # nothing half-written


def test_cli_evaluates_a_saved_pluto_network(pipeline, tmp_path, capsys):
    from pluto_dvc.model import ModelConfig
    from pluto_dvc.model.model import PlutoModel
    from pluto_dvc.model.weights import save_model

    root, data = pipeline
    torch.manual_seed(0)
    save_model(PlutoModel(ModelConfig.for_cache(root / "cache", preset="small")), tmp_path / "m")
    settings = {
        "scenarios_per_type": 1,
        "scenario_types": ["unknown"],
        "learning_max_samples": 8,
        "num_pictures": 1,
        "num_worst_pictures": 0,
        "picture_size_px": 400,
    }
    overrides = [x for k, v in settings.items() for x in ("-S", f"evaluate.{k}={json.dumps(v)}")]
    code = main(
        [
            "evaluate",
            *overrides,
            "--model",
            str(tmp_path / "m"),
            "--cache-dir",
            str(root / "cache"),
            "--scenarios",
            str(root / "scenarios.parquet"),
            "--splits",
            str(root / "splits.json"),
            "--data-root",
            str(data.data_root),
            "--maps-root",
            str(data.maps_root),
            "--reports",
            str(tmp_path / "reports"),
            "--no-mlflow",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "model" in out and "expert                           1.000" in out
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["counts"]["scenarios"] == 1 and metrics["learning"]["num_samples"] == 8
    assert 0.0 <= metrics["ols"]["model"]["score"] <= 1.0
    (png,) = (tmp_path / "reports" / "scenes").glob("scene_00_*.png")
    rgb = _image(png)
    assert rgb.shape == (400, 400, 3)
    pink = np.abs(rgb.astype(int) - (0xFF, 0x00, 0xAA)).sum(axis=-1) < 40  # model top-1
    assert pink.sum() > 10
