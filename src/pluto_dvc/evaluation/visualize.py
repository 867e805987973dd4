"""``pluto-dvc visualize --token T [--model models/]``: the picture of any cached scenario, with the
baselines' plans and, given a model, its candidates and top-1 trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pluto_dvc.errors import DataError
from pluto_dvc.evaluation.planners import (
    ConstantVelocityPlanner,
    FrameBatch,
    ReferenceLinePlanner,
)
from pluto_dvc.evaluation.runner import SceneFrame, inference_sample
from pluto_dvc.params import EvaluateParams


def logged_future(sample: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 3) float64 the ego's logged future (rear axle, ego frame) stored in a sample."""
    f = sample["agent.target"].shape[1]
    present = sample["agent.position"].shape[1] - f - 1
    xy = sample["agent.position"][0, present + 1 :].astype(np.float64)
    heading = sample["agent.heading"][0, present + 1 :].astype(np.float64)
    return np.concatenate([xy, heading[:, None]], axis=1)


def scene_of_sample(
    sample: dict[str, np.ndarray],
    key: tuple[str, str, str],
    step_s: float,
    model=None,
    num_candidates: int = 6,
) -> tuple[SceneFrame, str]:
    """The picture content of one sample (log_name, token, type = ``key``) and a title line."""
    sample = inference_sample(sample)
    future = logged_future(sample)
    horizon = step_s * len(future)
    frames = FrameBatch([sample], future[None], step_s * np.arange(1, len(future) + 1))
    planners = [ConstantVelocityPlanner(horizon, step_s), ReferenceLinePlanner(horizon, step_s)]
    plans = {p.name: p.plan(frames).poses[0] for p in planners}
    candidates = scores = None
    title = ""
    if model is not None:
        from pluto_dvc.evaluation.model_planner import ModelPlanner

        plan = ModelPlanner(model, step_s, num_candidates).plan(frames)
        plans = {"model": plan.poses[0], **plans}
        candidates, scores = plan.candidates[0], plan.candidate_scores[0]
        n = min(len(future), plan.poses.shape[1])
        fde = float(np.hypot(*(plan.poses[0, n - 1, :2] - future[n - 1, :2])))
        title = f"model top-1 final error {fde:.2f} m after {n * step_s:g} s"
    frame = SceneFrame(key[0], key[1], key[2], sample, future, plans, candidates, scores)
    return frame, title


def visualize_token(
    token: str,
    cache_dir: str | Path,
    out: str | Path | None = None,
    model_dir: str | Path | None = None,
    params: EvaluateParams | None = None,
) -> Path:
    """Draw the cached scenario ``token``; returns the PNG path."""
    from pluto_dvc.cache import CacheDataset
    from pluto_dvc.evaluation.scenes import draw_scene
    from pluto_dvc.evaluation.stage import cache_features

    params = params or EvaluateParams()
    cache = CacheDataset(cache_dir)
    tokens = cache.table.column("token").to_pylist()
    token = token.lower()
    if token not in tokens:
        raise DataError(
            f"token {token} is not in the cache {cache_dir} ({len(tokens)} samples); "
            "`pluto-dvc cache inspect` shows the cached tokens"
        )
    index = tokens.index(token)
    model = None
    if model_dir is not None:
        if not (Path(model_dir) / "model.safetensors").is_file():
            raise DataError(f"{model_dir}/model.safetensors does not exist: run `dvc repro train`")
        from pluto_dvc.model import load_model

        model = load_model(model_dir)
    step = cache_features(cache.meta, cache_dir).sample_interval_s
    frame, title = scene_of_sample(
        cache[index], cache.key(index), step, model, params.picture_candidates
    )
    path = Path(out) if out else Path("reports/scenes") / f"{token}.png"
    return draw_scene(
        frame,
        path,
        size_px=params.picture_size_px,
        radius_m=params.picture_radius_m,
        num_candidates=params.picture_candidates,
        title=title,
    )
