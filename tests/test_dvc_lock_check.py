"""scripts/check_lock.py: code and params changes make dvc.lock stale; missing data does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_lock.py"


def _module():
    spec = importlib.util.spec_from_file_location("check_lock", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_params_and_command_changes_are_stale_data_changes_are_not(monkeypatch):
    check = _module()
    monkeypatch.setattr(check, "_tracked", lambda path: path.startswith(("src/", "stages/")))
    status = {
        "build_cache": [
            {
                "changed deps": {
                    "src/pluto_dvc/cache": "modified",
                    "data/scenarios.parquet": "deleted",
                }
            },
            {"changed outs": {"data/cache": "deleted"}},
        ],
        "train": [{"changed deps": {"params.yaml": {"train.lr": "modified"}}}],
        "split": ["changed command"],
        "evaluate": [{"changed deps": {"models": "deleted", "data/cache": "deleted"}}],
    }
    assert check.stale_items(status) == [
        "build_cache: src/pluto_dvc/cache modified",
        "train: param train.lr modified",
        "split: changed command",
    ]
    assert check.stale_items({}) == []
