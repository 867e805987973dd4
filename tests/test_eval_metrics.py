"""The open-loop score on hand-computed cases (spec/metrics.md section 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pluto_dvc.evaluation.open_loop import (
    OpenLoopConfig,
    comparison_errors,
    horizon_errors,
    poses_at,
    score_frames,
    score_scenario,
)
from pluto_dvc.nuplan.vehicle import EGO_REAR_AXLE_TO_CENTER_M

CFG = OpenLoopConfig()  # the devkit's defaults: horizons 3, 5, 8 s at 1 Hz
STEP = 0.1
TIMES = STEP * np.arange(1, 81)  # a PLUTO trajectory: 80 steps of 0.1 s


def _straight(origin, angle, speed, seconds):
    """(K, 3) global rear-axle poses driving straight from ``origin`` along ``angle``."""
    s = speed * np.asarray(seconds, dtype=np.float64)
    return np.stack(
        [origin[0] + s * math.cos(angle), origin[1] + s * math.sin(angle), np.full(len(s), angle)],
        axis=1,
    )


def _frame(origin=(100.0, 200.0), angle=0.3):
    return np.array([origin]), np.array([angle])


def test_lateral_offset_of_one_metre():
    origin, angle = _frame()
    expert = _straight(origin[0], angle[0], 10.0, CFG.comparison_times_s)[None]
    planned = np.zeros((1, len(TIMES), 3))
    planned[0, :, 0] = 10.0 * TIMES
    planned[0, :, 1] = 1.0  # 1 m to the left, same heading
    disp, head = score_frames(TIMES, planned, origin, angle, expert, CFG)
    np.testing.assert_allclose(disp, 1.0, atol=1e-9)
    np.testing.assert_allclose(head, 0.0, atol=1e-12)
    score = score_scenario(disp, head, CFG)
    assert score.ade_m == pytest.approx(1.0) and score.fde_m == pytest.approx(1.0)
    assert score.ade_score == pytest.approx(1 - 1 / 8) and score.fde_score == pytest.approx(0.875)
    assert score.ahe_score == pytest.approx(1.0) and score.miss_rate_score == 1.0
    # (1 * 0.875 + 2 * 1 + 1 * 0.875 + 2 * 1) / 6
    assert score.score == pytest.approx(5.75 / 6)


def test_heading_error_wraps_around_pi():
    disp, head = comparison_errors(np.array([[[0.0, 0.0, 3.1]]]), np.array([[[0.0, 0.0, -3.1]]]))
    assert head[0, 0] == pytest.approx(2 * math.pi - 6.2)  # 0.083 rad, not 6.2
    # a frame heading at pi - 0.05 whose plan turns 0.1 rad left crosses +pi into -pi + 0.05
    origin, angle = _frame(angle=math.pi - 0.05)
    expert = _straight(origin[0], angle[0], 0.0, CFG.comparison_times_s)[None]
    planned = np.zeros((1, len(TIMES), 3))
    planned[0, :, 2] = 0.1
    disp, head = score_frames(TIMES, planned, origin, angle, expert, CFG)
    np.testing.assert_allclose(head, 0.1, atol=1e-12)
    # positions are box centres: the 0.1 rad turn about the rear axle moves the centre
    np.testing.assert_allclose(disp, 2 * EGO_REAR_AXLE_TO_CENTER_M * math.sin(0.05), atol=1e-12)
    score = score_scenario(disp, head, CFG)
    assert score.ahe_score == pytest.approx(1 - 0.1 / 0.8)
    assert score.fhe_score == pytest.approx(1 - 0.1 / 0.8)


def test_interpolated_heading_takes_the_short_way_across_pi():
    poses = np.array([[[0.0, 0.0, 3.1], [2.0, 0.0, -3.1]]])
    mid = poses_at(np.array([1.0, 2.0]), poses, np.array([1.5]))
    assert abs(abs(mid[0, 0, 2]) - math.pi) < 1e-12 and mid[0, 0, 0] == pytest.approx(1.0)


def test_planner_trajectory_shorter_than_the_horizon_repeats_its_last_point():
    origin, angle = _frame()
    expert = _straight(origin[0], angle[0], 10.0, CFG.comparison_times_s)[None]
    short = STEP * np.arange(1, 41)  # 4 s only
    planned = np.zeros((1, len(short), 3))
    planned[0, :, 0] = 10.0 * short
    disp, head = score_frames(short, planned, origin, angle, expert, CFG)
    np.testing.assert_allclose(disp[0], [0, 0, 0, 0, 10, 20, 30, 40], atol=1e-9)
    e = horizon_errors(disp, head, CFG)
    np.testing.assert_allclose(e.ade[:, 0], [0.0, 2.0, 12.5], atol=1e-9)
    np.testing.assert_allclose(e.fde[:, 0], [0.0, 10.0, 40.0], atol=1e-9)
    score = score_scenario(disp, head, CFG)
    assert score.ade_m == pytest.approx(14.5 / 3) and score.fde_m == pytest.approx(50 / 3)
    assert score.ade_score == pytest.approx(1 - 14.5 / 24) and score.fde_score == 0.0
    assert score.miss_rates == (0.0, 1.0, 1.0) and score.score == 0.0


def _spiky(frames: int, spikes: int) -> np.ndarray:
    """(frames, 8) errors: ``spikes`` frames deviate 7 m at 2 s and are back on track at 3 s."""
    disp = np.zeros((frames, 8))
    disp[:spikes, 1] = 7.0
    return disp


def test_miss_rate_is_taken_on_the_maximum_displacement_within_the_horizon():
    disp = _spiky(10, 3)
    e = horizon_errors(disp, np.zeros_like(disp), CFG)
    # at 3 s the final error is 0 and the average 7/3 < 6 m, but the maximum 7 m > 6 m: a miss
    assert e.fde[0, 0] == 0.0 and e.ade[0, 0] == pytest.approx(7 / 3)
    assert e.max_displacement[0, 0] == 7.0
    score = score_scenario(disp, np.zeros_like(disp), CFG)
    assert score.miss_rates == pytest.approx((0.3, 0.0, 0.0))  # 7 m is within 8 m and 16 m
    assert score.miss_rate_score == 1.0  # 0.3 is not above the 0.3 bound


def test_miss_rate_multiplier_zeroes_the_scenario():
    disp = _spiky(10, 4)  # 40 % of the frames miss at 3 s
    score = score_scenario(disp, np.zeros_like(disp), CFG)
    assert score.miss_rates[0] == pytest.approx(0.4)
    assert score.ade_score > 0.9 and score.ahe_score == 1.0  # otherwise a good plan
    assert score.miss_rate_score == 0.0 and score.score == 0.0


def test_perfect_plan_scores_one_and_bounds_clip_at_zero():
    disp = np.zeros((15, 8))
    assert score_scenario(disp, disp, CFG).score == 1.0
    far = np.full((15, 8), 100.0)
    bad = score_scenario(far, np.full((15, 8), 3.0), CFG)
    assert bad.ade_score == bad.fde_score == bad.ahe_score == bad.fhe_score == 0.0
    assert bad.score == 0.0


def test_config_from_params_rejects_mismatched_thresholds():
    from pluto_dvc.errors import ParamsError
    from pluto_dvc.params import parse_params

    with pytest.raises(ParamsError, match="one threshold per comparison horizon"):
        parse_params({"evaluate": {"miss_displacement_thresholds_m": [6.0, 8.0]}})
    with pytest.raises(ParamsError, match="multiple of comparison_interval_s"):
        parse_params({"evaluate": {"comparison_horizons_s": [2.5, 5.0, 8.0]}})
    p = parse_params({}).evaluate
    assert OpenLoopConfig.from_params(p) == CFG


def test_scenario_choice_caps_types_and_keeps_starts_apart():
    import pandas as pd

    from pluto_dvc.evaluation.scenarios import choose_per_type

    rows = pd.DataFrame(
        {
            "log_name": ["a"] * 40 + ["b"] * 5,
            "token": [f"{i:016x}" for i in range(45)],
            "scenario_type": ["x"] * 30 + ["y"] * 10 + ["x"] * 5,
            "timestamp_us": [i * 1_000_000 for i in range(40)] + [i * 1_000_000 for i in range(5)],
        }
    )
    chosen = choose_per_type(rows, cap=3, seed=0, min_separation_s=15.0)
    assert chosen.scenario_type.value_counts().to_dict() == {"x": 3, "y": 1}
    for (_, _), group in chosen.groupby(["log_name", "scenario_type"]):
        t = np.sort(group.timestamp_us.to_numpy())
        assert np.all(np.diff(t) >= 15_000_000)
    again = choose_per_type(rows, cap=3, seed=0, min_separation_s=15.0)
    assert chosen.equals(again)  # seeded
    keys = list(zip(chosen.log_name, chosen.timestamp_us, strict=True))
    assert keys == sorted(keys)  # ordered by (log, time)
    everything = choose_per_type(rows, cap=None, seed=0, min_separation_s=0.0)
    assert len(everything) == len(rows)
