"""The scenario-filter presets: the one table of their names and values.

``PRESETS[name]()`` gives the fields a preset sets (``filter.preset`` in params.yaml); explicit
params override them (``selection.config.resolve_filter``). The params schema takes its list of
valid names from this table.
"""

from __future__ import annotations

from typing import Any

from pluto_dvc.reference import val14_scenario_tokens, val14_scenario_types


def _val14() -> dict[str, Any]:
    """Val14 (PLUTO ``config/scenario_filter/val14_benchmark.yaml``): the 14 challenge types, the
    1,090 Val14 tokens, ``timestamp_threshold_s: 15``, ``remove_invalid_goals: true``,
    ``shuffle: false``, ``expand_scenarios: null`` (false). The tokens exist only in real nuPlan."""
    return {
        "scenario_types": tuple(sorted(val14_scenario_types())),
        "scenario_tokens": tuple(sorted(val14_scenario_tokens())),
        "timestamp_threshold_s": 15.0,
        "expand_scenarios": False,
        "remove_invalid_goals": True,
        "shuffle": False,
    }


def _challenge_14() -> dict[str, Any]:
    """The 14-type challenge set (nuplan-devkit ``scenario_filter/nuplan_challenge_scenarios.yaml``):
    the Val14 types, no token list, ``expand_scenarios: false``, ``remove_invalid_goals: true``,
    ``shuffle: false``. Works on any dataset, synthetic included."""
    return {
        "scenario_types": tuple(sorted(val14_scenario_types())),
        "expand_scenarios": False,
        "remove_invalid_goals": True,
        "shuffle": False,
    }


def _tiny_50() -> dict[str, Any]:
    """PLUTO ``config/scenario_filter/training_scenarios_tiny.yaml``: ``limit_total_scenarios: 50``,
    ``expand_scenarios: true``, ``remove_invalid_goals: true``, ``shuffle: true``."""
    return {
        "limit_total_scenarios": 50,
        "expand_scenarios": True,
        "remove_invalid_goals": True,
        "shuffle": True,
    }


def _one_million() -> dict[str, Any]:
    """PLUTO ``config/scenario_filter/training_scenarios_1M.yaml``:
    ``limit_total_scenarios: 1000000``, ``expand_scenarios: true``, ``remove_invalid_goals: true``,
    ``shuffle: false``."""
    return {
        "limit_total_scenarios": 1_000_000,
        "expand_scenarios": True,
        "remove_invalid_goals": True,
        "shuffle": False,
    }


PRESETS = {
    "": dict,
    "tiny_50": _tiny_50,
    "one_million": _one_million,
    "val14": _val14,
    "challenge_14": _challenge_14,
}
