"""A throw-away git + DVC repository holding a copy of the project, for end-to-end stage tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pluto_dvc.testing.synthetic_factory import TINY_SYNTHETIC

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ("dvc.yaml", "params.yaml", "stages", "src", "pyproject.toml", ".gitignore")

# The whole pipeline in about a minute on a laptop core: three tiny logs (train/val/test get one
# each), 90 scenarios, one epoch of two batches, one scenario per type in the evaluation.
TINY_PIPELINE = {
    "synthetic": {**TINY_SYNTHETIC, "num_logs": 3},
    "filter": {"limit_total_scenarios": 90, "shuffle": True},
    "worker": {"kind": "sequential"},
    "cache": {"max_failure_ratio": 0.5},
    "train": {
        "epochs": 1,
        "warmup_epochs": 0,
        "batch_size": 8,
        "limit_train_batches": 2,
        "limit_val_batches": 1,
    },
    "evaluate": {
        "scenarios_per_type": 1,
        "learning_max_samples": 16,
        "num_pictures": 1,
        "num_worst_pictures": 1,
        "picture_size_px": 300,
    },
}


class DvcRepo:
    """``git init`` + ``dvc init`` in ``root`` with the project's pipeline files copied in."""

    def __init__(self, root: Path, params: dict | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            src = PROJECT / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)
        if params:
            self.update_params(params)
        self.env = _environment()
        self.run("git", "init", "-q")
        self.run("git", "config", "user.email", "test@example.com")
        self.run("git", "config", "user.name", "test")
        self.run("dvc", "init", "-q")
        shutil.copy2(PROJECT / ".dvcignore", root / ".dvcignore")  # byte code is no dependency
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", "init")

    @classmethod
    def copy_of(cls, other: DvcRepo, root: Path) -> DvcRepo:
        """An independent copy of ``other`` (work tree, git history, DVC cache) at ``root``."""
        shutil.copytree(other.root, root, symlinks=True)
        repo = cls.__new__(cls)
        repo.root, repo.env = root, _environment()
        return repo

    @classmethod
    def clone_of(cls, other: DvcRepo, root: Path) -> DvcRepo:
        """A ``git clone`` of ``other`` at ``root`` (its DVC-tracked files absent until pulled)."""
        other.run("git", "clone", "-q", str(other.root), str(root))
        repo = cls.__new__(cls)
        repo.root, repo.env = root, _environment()
        return repo

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)

    def update_params(self, updates: dict) -> None:
        """Merge ``{section: {key: value}}`` into the copy's params.yaml."""
        path = self.root / "params.yaml"
        raw = yaml.safe_load(path.read_text())
        for section, values in updates.items():
            raw.setdefault(section, {}).update(values)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = cmd[0]
        if exe == "dvc":
            cmd = (str(Path(sys.executable).parent / "dvc"), *cmd[1:])
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def repro(self, *targets: str) -> subprocess.CompletedProcess:
        return self.run("dvc", "repro", *targets)


def _environment() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0")
    # stage commands call `python` and queue workers call `dvc`: make both this interpreter's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # the stages import the copy's own sources (relative: also right in `dvc exp` workspaces)
    env["PYTHONPATH"] = "src"
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(key, None)
    return env
