"""Baselines through the real feature builder and the open-loop runner on a hand-built straight
road: the expert scores 1, constant velocity is exact for an ego keeping its speed (and is not
for one that accelerates), the reference-line follower is exact on its lane."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pluto_dvc.evaluation.open_loop import OpenLoopConfig
from pluto_dvc.evaluation.planners import (
    ConstantVelocityPlanner,
    ExpertPlanner,
    ReferenceLinePlanner,
    best_reference_line,
    follow_line,
)
from pluto_dvc.evaluation.runner import FrameSource, evaluate_log, inference_features
from pluto_dvc.evaluation.scenarios import ScenarioTiming, usable_rows
from pluto_dvc.features import LogFeatureBuilder
from pluto_dvc.nuplan.log_schema import tokens_hex
from pluto_dvc.params import EvaluateParams, FeatureParams
from pluto_dvc.testing.feature_factory import (
    LogSpec,
    ego_drive,
    make_log,
    straight_road_layers,
    write_map,
)

FEATURES = FeatureParams(build_cost_map=False, build_causal=False)
EVAL = EvaluateParams()
PLANNERS = [ConstantVelocityPlanner(), ReferenceLinePlanner(), ExpertPlanner()]
FRAMES = 600  # 30 s at 20 Hz: 2 s history + 15 s scenario + 8 s after the last query


@pytest.fixture(scope="module")
def road(tmp_path_factory):
    return write_map(tmp_path_factory.mktemp("road"), straight_road_layers())


def _run(road, log, start_frames):
    timing = ScenarioTiming.of(EVAL, FEATURES)
    tokens = tokens_hex(log.clock.token)
    rows = pd.DataFrame(
        {
            "token": [str(tokens[f]) for f in start_frames],
            "scenario_type": ["unknown"] * len(start_frames),
        }
    )
    rows["frame"] = usable_rows(rows, log, timing)
    assert (rows.frame >= 0).all()
    source = FrameSource(LogFeatureBuilder(inference_features(FEATURES), log, road))
    results, skipped = evaluate_log(
        log, rows, source, PLANNERS, OpenLoopConfig(), timing, batch_size=7
    )
    assert not skipped
    return results


def test_expert_and_both_constant_velocity_baselines_are_exact_at_constant_speed(road):
    x, y, h, v = ego_drive(FRAMES, (-250.0, 0.0), 0.0, 12.0)  # on lane 1000's centreline
    results = _run(road, make_log(LogSpec(x, y, h, v, route=(100,))), [40, 60])
    assert len(results) == 2
    for r in results:
        assert len(r.displacement["expert"]) == 15  # queried every 1 s of 15 s
        for name in ("expert", "constant_velocity", "constant_velocity_reference_line"):
            assert r.scores[name].score == pytest.approx(1.0, abs=1e-9), name
            assert r.displacement[name].max() < 1e-4, name


def test_constant_velocity_errs_when_the_ego_accelerates(road):
    n = FRAMES
    t = np.arange(n) * 0.05
    x = -250.0 + 5.0 * t + 0.5 * 1.0 * t**2  # 1 m/s^2 from 5 m/s
    log = make_log(LogSpec(x, np.zeros(n), np.zeros(n), 5.0 + t, route=(100,)))
    (r,) = _run(road, log, [40])
    assert r.scores["expert"].score == pytest.approx(1.0, abs=1e-9)
    # 8 s ahead constant velocity falls 0.5 * 1 * 8^2 = 32 m behind
    np.testing.assert_allclose(r.displacement["constant_velocity"][:, -1], 32.0, atol=1e-3)
    np.testing.assert_allclose(r.displacement["constant_velocity"][:, 0], 0.5, atol=1e-3)
    assert r.scores["constant_velocity"].score < 0.5


def test_reference_line_follower_takes_the_nearest_line_and_follows_its_bend():
    lines = np.zeros((2, 5, 2), np.float32)
    lines[0, :, 0] = np.arange(5)
    lines[0, :, 1] = -3.5  # the other lane
    lines[1, :, 0] = np.arange(5)
    valid = np.ones((2, 5), bool)
    valid[1, 4] = False
    sample = {"reference_line.position": lines, "reference_line.valid_mask": valid}
    assert best_reference_line(sample) == 1
    bend = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    poses = follow_line(bend, np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(poses[:, :2], [[1, 0], [2, 1], [2, 3]], atol=1e-12)
    np.testing.assert_allclose(poses[:, 2], [0, math.pi / 2, math.pi / 2], atol=1e-12)
